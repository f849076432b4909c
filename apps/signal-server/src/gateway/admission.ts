import { GatewayError } from '@butterfly/core'
import { retryAfterOf, ServiceEstimate } from './service-estimate.js'

/** The defaults of a mesh's admission (and of the CLI flags that set them). */
export const ADMISSION_DEFAULTS = {
  /** High enough that a batching backend has generations to batch. */
  maxConcurrent: 64,
  maxQueued: 256,
  /** A quarter of the queue: four flooding clients at least are needed to fill it. */
  maxQueuedPerKey: 64,
  maxQueueWaitMs: 30_000,
} as const

/** The client key of requests that name no client (no bearer token, no address). */
export const ANONYMOUS_CLIENT = 'anonymous'

/** Retry-After of a refusal when no generation has ended yet, so nothing was measured. */
const UNMEASURED_RETRY_AFTER_SECONDS = 2

export interface AdmissionInit {
  /** Generations running at once on one mesh. */
  readonly maxConcurrent: number
  /** Generations allowed to wait behind them, all clients together; past that, 429. */
  readonly maxQueued: number
  /** Generations one client key may have waiting; past that, 429 for that key only. */
  readonly maxQueuedPerKey: number
  /** The longest a generation may wait for its slot, estimated at enqueue and enforced after. */
  readonly maxQueueWaitMs: number
}

/** Time for the admission; tests pass a manual one. */
export interface AdmissionClock {
  now(): number
  /** Calls `fn` after `ms`; the returned function cancels it. */
  later(ms: number, fn: () => void): () => void
}

export interface AdmissionComponents {
  readonly clock?: AdmissionClock
  /** Called whenever the running or queued count changes (metrics gauges). */
  readonly onChange?: (running: number, queued: number) => void
}

const realClock: AdmissionClock = {
  now: () => performance.now(),
  later: (ms, fn) => {
    const t = setTimeout(fn, ms)
    // A waiter's deadline must not keep a stopping process alive.
    t.unref?.()
    return () => clearTimeout(t)
  },
}

interface Waiter {
  readonly key: string
  readonly resolve: (release: () => void) => void
  cancelTimer: () => void
  unlisten: () => void
}

/**
 * Admission of generations to one mesh: at most maxConcurrent run, the rest wait in one FIFO
 * per client key, and a freed slot goes to the keys in turn (round robin), so a client that
 * floods the mesh delays another client's request by one of its own at most per turn, never
 * by its whole backlog. Full queues (all keys, or one key) answer ERR_QUEUE_FULL at once; a
 * generation whose estimated wait exceeds maxQueueWaitMs is refused at once, and one that has
 * waited that long is dropped, both with ERR_QUEUE_TIMEOUT. Every refusal carries a
 * Retry-After derived from the measured rate at which slots come free.
 */
export class Admission {
  private running = 0
  private waiting = 0
  /**
   * Waiters per client key, oldest first. The Map's order is the round-robin ring: the first
   * key is served next, and a key that still has waiters afterwards is moved to the end.
   */
  private readonly queues = new Map<string, Waiter[]>()
  private readonly service: ServiceEstimate
  private readonly clock: AdmissionClock

  constructor(
    private readonly init: AdmissionInit,
    private readonly components: AdmissionComponents = {},
  ) {
    this.service = new ServiceEstimate(init.maxConcurrent)
    this.clock = components.clock ?? realClock
  }

  get active(): number {
    return this.running
  }

  get queued(): number {
    return this.waiting
  }

  /** Waiting generations of one client key. */
  queuedFor(key: string): number {
    return this.queues.get(key)?.length ?? 0
  }

  /** The measured mean time a generation holds its slot (undefined before the first ends). */
  get serviceMs(): number | undefined {
    return this.service.serviceMs
  }

  /**
   * Resolves with a release function once the generation may run; rejects with GatewayError
   * (ERR_QUEUE_FULL, ERR_QUEUE_TIMEOUT) or, when `signal` aborts while it waits, its reason.
   * `key` identifies the client (a digest, never a secret itself).
   */
  acquire(key: string, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (this.running < this.init.maxConcurrent) {
      this.running++
      this.changed()
      return Promise.resolve(this.releaser())
    }
    const own = this.queuedFor(key)
    if (this.waiting >= this.init.maxQueued) {
      return Promise.reject(
        this.full(`${this.running} generations running and ${this.waiting} waiting`, this.service.waitMs(0)),
      )
    }
    if (own >= this.init.maxQueuedPerKey) {
      // A place of this key frees when its oldest waiter is admitted.
      return Promise.reject(
        this.full(
          `this client already has ${own} generations waiting`,
          this.service.waitMs(this.ahead(key, 0)),
        ),
      )
    }
    const estimate = this.service.waitMs(this.ahead(key, own))
    if (estimate !== undefined && estimate > this.init.maxQueueWaitMs) {
      // After estimate - bound the queue ahead has drained enough for the wait to fit the bound.
      return Promise.reject(
        this.timeout(
          `the estimated wait of ${seconds(estimate)} s exceeds the bound of ${seconds(this.init.maxQueueWaitMs)} s`,
          estimate - this.init.maxQueueWaitMs,
        ),
      )
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { key, resolve, cancelTimer: () => undefined, unlisten: () => undefined }
      this.enqueue(waiter)
      waiter.cancelTimer = this.clock.later(this.init.maxQueueWaitMs, () => {
        const index = this.queues.get(key)?.indexOf(waiter) ?? -1
        if (index < 0) return
        // What is left of its wait, had it stayed: the client's Retry-After.
        const left = this.service.waitMs(this.ahead(key, index))
        this.remove(waiter)
        reject(this.timeout(`waited ${seconds(this.init.maxQueueWaitMs)} s for a slot`, left))
      })
      if (signal !== undefined) {
        const onAbort = () => {
          if (this.remove(waiter)) reject(signal.reason)
        }
        signal.addEventListener('abort', onAbort, { once: true })
        waiter.unlisten = () => signal.removeEventListener('abort', onAbort)
      }
    })
  }

  /**
   * Waiters admitted before the one at `index` of `key`'s queue (index = its length: one not
   * yet queued). Each turn of the ring admits one waiter per key: keys before `key` in the ring
   * get index + 1 turns first, keys after it index turns, and `key` itself its index older ones.
   */
  private ahead(key: string, index: number): number {
    let ahead = index
    let before = true
    for (const [k, queue] of this.queues) {
      if (k === key) {
        before = false
        continue
      }
      ahead += Math.min(queue.length, before ? index + 1 : index)
    }
    return ahead
  }

  private enqueue(waiter: Waiter): void {
    const queue = this.queues.get(waiter.key)
    if (queue === undefined) this.queues.set(waiter.key, [waiter])
    else queue.push(waiter)
    this.waiting++
    this.changed()
  }

  /** Takes a waiter out of its queue; false when it was no longer there (settled already). */
  private remove(waiter: Waiter): boolean {
    const queue = this.queues.get(waiter.key)
    const i = queue?.indexOf(waiter) ?? -1
    if (queue === undefined || i < 0) return false
    queue.splice(i, 1)
    if (queue.length === 0) this.queues.delete(waiter.key)
    this.settle(waiter)
    return true
  }

  /** The next waiter in round-robin order, taken out of its queue. */
  private next(): Waiter | undefined {
    const first = this.queues.entries().next()
    if (first.done === true) return undefined
    const [key, queue] = first.value
    const waiter = queue.shift() as Waiter
    // Re-inserting moves the key to the end of the ring: every other key goes first.
    this.queues.delete(key)
    if (queue.length > 0) this.queues.set(key, queue)
    this.settle(waiter)
    return waiter
  }

  private settle(waiter: Waiter): void {
    this.waiting--
    waiter.cancelTimer()
    waiter.unlisten()
  }

  private releaser(): () => void {
    const started = this.clock.now()
    let released = false
    return () => {
      if (released) return
      released = true
      this.service.observe(this.clock.now() - started)
      // The slot passes straight to the next waiter, so a newcomer never overtakes the queue.
      const next = this.next()
      if (next) next.resolve(this.releaser())
      else this.running--
      this.changed()
    }
  }

  private full(why: string, waitMs: number | undefined): GatewayError {
    return new GatewayError('ERR_QUEUE_FULL', `the mesh is busy: ${why}`, retryAfterOrDefault(waitMs))
  }

  private timeout(why: string, waitMs: number | undefined): GatewayError {
    return new GatewayError('ERR_QUEUE_TIMEOUT', `the mesh is busy: ${why}`, retryAfterOrDefault(waitMs))
  }

  private changed(): void {
    this.components.onChange?.(this.running, this.waiting)
  }
}

function retryAfterOrDefault(waitMs: number | undefined): number {
  return waitMs === undefined ? UNMEASURED_RETRY_AFTER_SECONDS : retryAfterOf(waitMs)
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(1)
}
