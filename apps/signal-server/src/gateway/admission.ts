import { GatewayError } from '@butterfly/core'

export interface AdmissionInit {
  /** Generations running at once on one mesh. */
  readonly maxConcurrent: number
  /** Generations allowed to wait behind them; past that, 429. */
  readonly maxQueued: number
  /** Seconds a rejected client is told to wait (Retry-After). */
  readonly retryAfterSeconds: number
}

/**
 * A bounded FIFO of generations per mesh: a full queue answers 429 at once instead of
 * letting requests pile up without bound (GatewayError ERR_QUEUE_FULL).
 */
export class Admission {
  private running = 0
  private readonly waiting: Array<{ resolve: (release: () => void) => void; reject: (e: unknown) => void }> =
    []

  constructor(private readonly init: AdmissionInit) {}

  get active(): number {
    return this.running
  }

  get queued(): number {
    return this.waiting.length
  }

  /** Resolves with a release function once the generation may run. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.running < this.init.maxConcurrent) {
      this.running++
      return Promise.resolve(this.releaser())
    }
    if (this.waiting.length >= this.init.maxQueued) {
      return Promise.reject(
        new GatewayError(
          'ERR_QUEUE_FULL',
          `the mesh is busy: ${this.running} generations running and ${this.waiting.length} waiting`,
          this.init.retryAfterSeconds,
        ),
      )
    }
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject }
      this.waiting.push(entry)
      signal?.addEventListener(
        'abort',
        () => {
          const i = this.waiting.indexOf(entry)
          if (i >= 0) this.waiting.splice(i, 1)
          reject(signal.reason)
        },
        { once: true },
      )
    })
  }

  private releaser(): () => void {
    let released = false
    return () => {
      if (released) return
      released = true
      const next = this.waiting.shift()
      if (next) next.resolve(this.releaser())
      else this.running--
    }
  }
}
