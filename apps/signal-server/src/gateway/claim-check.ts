/**
 * Checks the throughput a peer claimed at join (layerStepsPerSec, from its join benchmark,
 * which placement ranks it by) against the step times the gateway measures. A peer whose
 * median single-token step over the last `minSteps` takes more than `factor` times what its
 * claim implies (plus `slackMs` for the network and the gateway's own work) is flagged as
 * 'slow-claim', and the gateway excludes it from the next plan.
 */
export interface SlowClaimOptions {
  /** How many times slower than claimed counts as a false claim. Default 4. */
  readonly factor?: number
  /** Single-token steps measured before a peer is judged (the window of the median). Default 32. */
  readonly minSteps?: number
  /** Milliseconds allowed on top (the link's round trip, framing, the gateway). Default 50. */
  readonly slackMs?: number
}

export const SLOW_CLAIM_DEFAULTS = { factor: 4, minSteps: 32, slackMs: 50 } as const

/** What a judged peer was found at (for the log and tests). */
export interface SlowClaim {
  readonly peerId: string
  readonly claimedMs: number
  readonly medianMs: number
}

export class SlowClaimCheck {
  readonly factor: number
  readonly minSteps: number
  readonly slackMs: number
  private readonly samples = new Map<string, number[]>()
  private readonly flaggedPeers = new Map<string, SlowClaim>()

  constructor(options: SlowClaimOptions = {}) {
    this.factor = options.factor ?? SLOW_CLAIM_DEFAULTS.factor
    this.minSteps = options.minSteps ?? SLOW_CLAIM_DEFAULTS.minSteps
    this.slackMs = options.slackMs ?? SLOW_CLAIM_DEFAULTS.slackMs
    if (!(Number.isFinite(this.factor) && this.factor >= 1)) throw new RangeError('factor must be at least 1')
    if (!(Number.isSafeInteger(this.minSteps) && this.minSteps >= 1)) {
      throw new RangeError('minSteps must be a positive integer')
    }
    if (!(Number.isFinite(this.slackMs) && this.slackMs >= 0))
      throw new RangeError('slackMs must be at least 0')
  }

  /**
   * One single-token step over `layers` layers on `peerId`, which claimed `layerStepsPerSec`,
   * took `ms`. Returns the finding when this step makes the peer flagged.
   */
  record(peerId: string, layerStepsPerSec: number, layers: number, ms: number): SlowClaim | undefined {
    if (this.flaggedPeers.has(peerId) || !(layerStepsPerSec > 0) || !(layers > 0) || !(ms >= 0))
      return undefined
    let window = this.samples.get(peerId)
    if (window === undefined) {
      window = []
      this.samples.set(peerId, window)
    }
    window.push(ms)
    if (window.length > this.minSteps) window.shift()
    if (window.length < this.minSteps) return undefined
    const claimedMs = (1000 * layers) / layerStepsPerSec
    const medianMs = median(window)
    if (medianMs <= this.factor * claimedMs + this.slackMs) return undefined
    const finding = { peerId, claimedMs, medianMs }
    this.flaggedPeers.set(peerId, finding)
    this.samples.delete(peerId)
    return finding
  }

  /** Peers found slower than claimed, oldest first. */
  flagged(): SlowClaim[] {
    return [...this.flaggedPeers.values()]
  }

  /** Forgets a peer's samples (it left; a new plan gives it other layers). */
  forget(peerId: string): void {
    this.samples.delete(peerId)
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}
