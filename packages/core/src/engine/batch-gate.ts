/**
 * Holds a decode batch back for a moment until the generations of the previous batch are back.
 * Without it, the run after a batch starts as soon as the first of its generations returns
 * (in-process its next step arrives a few microtasks later, remotely after the coordinator's round
 * trip, one generation after another), so a batch splits into small runs that each pay the run's
 * fixed cost. The wait starts when the first expected generation is back and lasts at most the
 * previous run's duration (capped at `maxWaitMs`): a batch never waits longer than one run would
 * have taken, and a lone generation, which expects only itself, never waits at all.
 */
export class BatchGate {
  private expected = new Set<string>()
  private waitMs = 0
  private deadline: number | undefined
  private timer: unknown

  constructor(
    private readonly now: () => number,
    private readonly maxWaitMs = 4,
  ) {}

  /** A decode run of `ids` took `ms`. */
  ran(ids: Iterable<string>, ms: number): void {
    this.expected = new Set(ids)
    this.waitMs = Math.min(this.maxWaitMs, ms)
    this.deadline = undefined
  }

  /** The generation ended: nothing more will come from it. */
  forget(id: string): void {
    this.expected.delete(id)
  }

  /**
   * Whether a decode batch of the `ready` generations should run now. When it should wait,
   * `wake` is called once the wait is over (a new arrival also re-asks, so it may run earlier).
   */
  shouldRun(ready: ReadonlySet<string>, wake: () => void): boolean {
    let back = false
    let missing = false
    for (const id of this.expected) {
      if (ready.has(id)) back = true
      else missing = true
    }
    const now = this.now()
    if (missing && back && this.deadline === undefined) this.deadline = now + this.waitMs
    if (!missing || !back || (this.deadline !== undefined && now >= this.deadline)) {
      this.release()
      return true
    }
    if (this.timer === undefined) {
      this.timer = setTimeout(
        () => {
          this.timer = undefined
          wake()
        },
        Math.max(0, (this.deadline as number) - now),
      )
    }
    return false
  }

  /** Stops waiting (the stage runs, or closes). */
  release(): void {
    if (this.timer !== undefined) clearTimeout(this.timer as Parameters<typeof clearTimeout>[0])
    this.timer = undefined
    this.expected.clear()
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
