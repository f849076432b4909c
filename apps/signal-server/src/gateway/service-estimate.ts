/** Retry-After never says less than a second (HTTP counts whole seconds) nor more than a minute. */
export const RETRY_AFTER_MIN_SECONDS = 1
export const RETRY_AFTER_MAX_SECONDS = 60

/** The Retry-After of a wait in milliseconds: whole seconds, rounded up, within 1..60. */
export function retryAfterOf(waitMs: number): number {
  if (!Number.isFinite(waitMs)) return RETRY_AFTER_MAX_SECONDS
  const seconds = Math.ceil(waitMs / 1000)
  return Math.min(RETRY_AFTER_MAX_SECONDS, Math.max(RETRY_AFTER_MIN_SECONDS, seconds))
}

/**
 * How long a mesh takes to free a generation slot, from an exponentially weighted mean of how
 * long recent generations held theirs. Every release counts, failed and aborted ones too: what
 * a waiter cares about is how fast slots come free, not how long a good answer takes.
 */
export class ServiceEstimate {
  private meanMs: number | undefined

  constructor(
    /** Slots that free up in parallel (the admission's maxConcurrent). */
    private readonly slots: number,
    /** Weight of the newest sample: 0.2 follows a change of load within ten generations or so. */
    private readonly alpha = 0.2,
  ) {}

  /** Notes that one generation held its slot for `ms`. */
  observe(ms: number): void {
    const sample = Math.max(0, ms)
    this.meanMs = this.meanMs === undefined ? sample : this.meanMs + this.alpha * (sample - this.meanMs)
  }

  /** The mean time a slot is held; undefined until one generation has ended. */
  get serviceMs(): number | undefined {
    return this.meanMs
  }

  /**
   * Expected milliseconds until a waiter is admitted when `ahead` waiters go before it: with
   * every slot busy, one comes free every serviceMs / slots on average, and the waiter takes
   * the (ahead + 1)th. Undefined before anything was measured: no guess is better than a wrong
   * one that turns clients away.
   */
  waitMs(ahead: number): number | undefined {
    if (this.meanMs === undefined) return undefined
    return ((ahead + 1) * this.meanMs) / this.slots
  }
}
