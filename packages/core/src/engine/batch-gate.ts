/**
 * Holds a decode batch back while most of the stage's generations are still away. Without it the
 * generations split into groups that never meet again: after a batch, whoever is back first (a
 * straggler, a generation whose prompt just finished) runs alone, and the batch returning a moment
 * later runs without it, every step from then on, each paying the run's fixed cost.
 *
 * A generation is "away" from its decode run here until its next step arrives. When fewer are
 * ready than away, the ready ones wait for the others, at most 1.5 times the usual time away
 * (measured, capped at `maxWaitMs`). So a straggler joins the batch, a batch waits for the rest of
 * itself, and two equal halves (a pipeline keeping two stages busy) never hold each other back;
 * a lone generation never waits.
 */
export class BatchGate {
  /** Generation → when its last decode run here ended, while it is away. */
  private readonly away = new Map<string, number>()
  /** Moving average of the time a generation is away. */
  private awayMs: number | undefined
  private deadline: number | undefined
  private timer: unknown

  constructor(
    private readonly now: () => number,
    private readonly maxWaitMs = 50,
  ) {}

  /** Generations between a decode run here and their next step. */
  get awayCount(): number {
    return this.away.size
  }

  /** A decode run of `ids` just ended. */
  ran(ids: Iterable<string>): void {
    const at = this.now()
    for (const id of ids) this.away.set(id, at)
  }

  /** The generation ended: nothing more will come from it. */
  forget(id: string): void {
    this.away.delete(id)
  }

  /**
   * Whether a decode batch of the `ready` generations should run now. When it should wait,
   * `wake` is called once the wait is over (a new arrival also re-asks, so it may run earlier).
   */
  shouldRun(ready: ReadonlySet<string>, wake: () => void): boolean {
    const now = this.now()
    for (const id of ready) {
      const since = this.away.get(id)
      if (since === undefined) continue
      this.away.delete(id)
      const ms = now - since
      this.awayMs = this.awayMs === undefined ? ms : 0.8 * this.awayMs + 0.2 * ms
    }
    // One away far longer than usual is not coming soon (its next step is a prompt chunk, or its
    // coordinator is gone): it no longer holds the others back.
    const stale = Math.max(250, 4 * (this.awayMs ?? 0))
    for (const [id, since] of this.away) if (now - since > stale) this.away.delete(id)
    if (ready.size >= this.away.size || this.awayMs === undefined) {
      this.release()
      return true
    }
    this.deadline ??= now + Math.min(this.maxWaitMs, 1.5 * this.awayMs)
    if (now >= this.deadline) {
      this.release()
      return true
    }
    if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined
        wake()
      }, this.deadline - now)
    }
    return false
  }

  /** Stops waiting (the stage runs, or closes). */
  release(): void {
    if (this.timer !== undefined) clearTimeout(this.timer as Parameters<typeof clearTimeout>[0])
    this.timer = undefined
    this.deadline = undefined
  }
}

type Immediate = (fn: () => void) => unknown

/**
 * Runs `fn` in a later macrotask, after every microtask queued now: setImmediate where the runtime
 * has it (Node), else a MessageChannel message (browsers, workers; setTimeout(0) is clamped to
 * 4 ms once nested), else setTimeout.
 */
export function afterMicrotasks(fn: () => void): void {
  const g = globalThis as unknown as { setImmediate?: Immediate; MessageChannel?: new () => ChannelLike }
  if (g.setImmediate !== undefined) {
    g.setImmediate(fn)
    return
  }
  if (g.MessageChannel !== undefined) {
    const channel = new g.MessageChannel()
    channel.port1.onmessage = () => {
      channel.port1.close()
      fn()
    }
    channel.port2.postMessage(0)
    return
  }
  setTimeout(fn, 0)
}

interface ChannelLike {
  readonly port1: { onmessage: (() => void) | null; close(): void }
  readonly port2: { postMessage(message: unknown): void }
}
