import { VerifyError } from '../errors.js'
import type { HiddenVote, TokenVote } from './vote.js'

/**
 * What each peer's replicas did in votes and window checks, and who may be trusted to lead.
 *
 * Flagging (exclusion) rules:
 * - burst: `flagAfter` disagreements among its last `window` agree/disagree outcomes;
 * - rate: over its last `rateWindow` outcomes, once at least `minRateSamples` were seen,
 *   a disagreement rate above `maxDisagreementRate` (catches a liar that lies rarely);
 * - unresponsive: `flagAfterTimeouts` missed step deadlines. A peer that is connected but answers
 *   late, or never, stalls every step it is asked for by a whole deadline, which is as damaging as
 *   a lie; deadlines are meant to be generous, so an honest peer does not miss one.
 * 'error' outcomes (the peer went away, or answered a step with an error) are counted and flag
 * nothing: a peer that dies is an honest failure, and membership removes it anyway. Neither
 * timeouts nor errors touch the agreement streak.
 * - proven: a lie settled against the peer by a fresh vote on the very position it answered
 *   (recordProven: a window check's dispute). The peer's own output was compared, at the calibrated
 *   tolerance, with what f + 1 others agreed on for the same input, which an honest peer fails
 *   only through a comparator false positive: one such outcome flags.
 * Counting disagreements in windows rather than over a lifetime keeps honest peers safe: an honest
 * replica disagrees only on a comparator false positive (rate ~0 at calibrated tolerances), and
 * three of those within 100 votes does not happen by chance. A flag sticks until `unflag`.
 *
 * Trust: a peer with `trustAfter` consecutive agreements may lead a stage's decode steps (its
 * outputs are still confirmed by replicas before any token they feed is shown); a single
 * disagreement resets its streak to 0.
 */

export type Outcome = 'agree' | 'disagree' | 'timeout' | 'error'
export type FlagReason = 'burst' | 'rate' | 'unresponsive' | 'proven'

export interface ReputationOptions {
  /** Default 3. */
  readonly flagAfter?: number
  /** Default 100. */
  readonly window?: number
  /** Default 1000. */
  readonly rateWindow?: number
  /** Default 200. */
  readonly minRateSamples?: number
  /** Default 0.02. */
  readonly maxDisagreementRate?: number
  /** Default 20. */
  readonly trustAfter?: number
  /** Missed step deadlines that flag a peer; default 1. */
  readonly flagAfterTimeouts?: number
}

export interface PeerReputation {
  readonly peerId: string
  readonly agreements: number
  readonly disagreements: number
  readonly timeouts: number
  readonly errors: number
  readonly flagged: boolean
  /** Why it was flagged, when it is. */
  readonly flagReason?: FlagReason
  /** Consecutive agreements. */
  readonly streak: number
  /** Disagreements among the last `window` outcomes. */
  readonly recentDisagreements: number
  /** Whether it is past trustAfter (it may lead decode steps). */
  readonly trusted: boolean
}

export interface ReputationSnapshot {
  readonly peers: PeerReputation[]
  readonly flagged: number
  readonly trusted: number
  readonly agreements: number
  readonly disagreements: number
  readonly timeouts: number
  readonly errors: number
}

interface PeerState {
  agreements: number
  disagreements: number
  timeouts: number
  errors: number
  flagReason: FlagReason | undefined
  streak: number
  /** Ring of the last rateWindow outcomes, 1 = disagree. */
  ring: Uint8Array
  head: number
  seen: number
  shortSum: number
  longSum: number
}

const MAX_PEER_ID_LENGTH = 256

function integer(v: number | undefined, fallback: number, name: string, min: number): number {
  const x = v ?? fallback
  if (!(Number.isSafeInteger(x) && x >= min)) {
    throw new VerifyError('ERR_VERIFY_INPUT', `${name} must be an integer >= ${min}, got ${String(x)}`)
  }
  return x
}

function fraction(v: number | undefined, fallback: number, name: string): number {
  const x = v ?? fallback
  if (!(typeof x === 'number' && x >= 0 && x <= 1)) {
    throw new VerifyError('ERR_VERIFY_INPUT', `${name} must be in [0, 1], got ${String(x)}`)
  }
  return x
}

export class ReputationBook {
  readonly flagAfter: number
  readonly window: number
  readonly rateWindow: number
  readonly minRateSamples: number
  readonly maxDisagreementRate: number
  readonly trustAfter: number
  readonly flagAfterTimeouts: number
  private readonly peers = new Map<string, PeerState>()

  constructor(options: ReputationOptions = {}) {
    this.flagAfter = integer(options.flagAfter, 3, 'flagAfter', 1)
    this.window = integer(options.window, 100, 'window', 1)
    this.rateWindow = integer(options.rateWindow, 1000, 'rateWindow', this.window)
    this.minRateSamples = integer(options.minRateSamples, 200, 'minRateSamples', 1)
    if (this.minRateSamples > this.rateWindow) {
      throw new VerifyError('ERR_VERIFY_INPUT', 'minRateSamples must be at most rateWindow')
    }
    this.maxDisagreementRate = fraction(options.maxDisagreementRate, 0.02, 'maxDisagreementRate')
    this.trustAfter = integer(options.trustAfter, 20, 'trustAfter', 1)
    this.flagAfterTimeouts = integer(options.flagAfterTimeouts, 1, 'flagAfterTimeouts', 1)
  }

  record(peerId: string, outcome: Outcome): void {
    if (!['agree', 'disagree', 'timeout', 'error'].includes(outcome)) {
      throw new VerifyError(
        'ERR_VERIFY_INPUT',
        `outcome must be agree, disagree, timeout or error, got ${String(outcome)}`,
      )
    }
    const p = this.state(peerId)
    if (outcome === 'error') {
      p.errors++
      return
    }
    if (outcome === 'timeout') {
      p.timeouts++
      if (p.flagReason === undefined && p.timeouts >= this.flagAfterTimeouts) p.flagReason = 'unresponsive'
      return
    }
    const bit = outcome === 'disagree' ? 1 : 0
    if (bit) {
      p.disagreements++
      p.streak = 0
    } else {
      p.agreements++
      p.streak++
    }
    const size = p.ring.length
    // The outcome `window` places back leaves the short window; the one `rateWindow` back, the long.
    if (p.seen >= this.window) p.shortSum -= p.ring[(p.head - this.window + size) % size] as number
    if (p.seen >= size) p.longSum -= p.ring[p.head] as number
    p.ring[p.head] = bit
    p.head = (p.head + 1) % size
    p.seen++
    p.shortSum += bit
    p.longSum += bit
    if (p.flagReason !== undefined) return
    if (p.shortSum >= this.flagAfter) p.flagReason = 'burst'
    else {
      const n = Math.min(p.seen, size)
      if (n >= this.minRateSamples && p.longSum / n > this.maxDisagreementRate) p.flagReason = 'rate'
    }
  }

  /** A lie proven against the peer (see `proven` above): counted as a disagreement, and flags at once. */
  recordProven(peerId: string): void {
    const p = this.state(peerId)
    const before = p.flagReason
    this.record(peerId, 'disagree')
    // The proof is the reason, even where the same disagreement also trips another rule.
    if (before === undefined) p.flagReason = 'proven'
  }

  /**
   * A peer on probation: it disagreed recently and has not yet rebuilt a clean record. Stages ask
   * it along with the others so a repeat liar is caught again soon, and it never leads.
   */
  isSuspect(peerId: string): boolean {
    const p = this.peers.get(peerId)
    return p !== undefined && p.flagReason === undefined && p.shortSum > 0 && p.streak < this.trustAfter
  }

  /** Records every replica of a vote that reached quorum; a vote without quorum proves nothing. */
  recordVote(vote: HiddenVote | TokenVote): void {
    if (!vote.ok) return
    for (const id of vote.agreeing) this.record(id, 'agree')
    for (const id of vote.disagreeing) this.record(id, 'disagree')
  }

  isFlagged(peerId: string): boolean {
    return this.peers.get(peerId)?.flagReason !== undefined
  }

  get(peerId: string): PeerReputation | undefined {
    const p = this.peers.get(peerId)
    return p === undefined ? undefined : this.view(peerId, p)
  }

  /** Clears a flag (an operator's decision); the peer's history restarts. */
  unflag(peerId: string): void {
    if (this.peers.has(peerId)) this.peers.set(peerId, this.fresh())
  }

  /** Drops a peer that left, so the book does not grow without bound. */
  forget(peerId: string): void {
    this.peers.delete(peerId)
  }

  /** Plain JSON-able view for /health and /metrics. */
  snapshot(): ReputationSnapshot {
    const peers = [...this.peers]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([id, p]) => this.view(id, p))
    let agreements = 0
    let disagreements = 0
    let timeouts = 0
    let errors = 0
    for (const p of peers) {
      agreements += p.agreements
      disagreements += p.disagreements
      timeouts += p.timeouts
      errors += p.errors
    }
    return {
      peers,
      flagged: peers.filter((p) => p.flagged).length,
      trusted: peers.filter((p) => p.trusted).length,
      agreements,
      disagreements,
      timeouts,
      errors,
    }
  }

  private view(peerId: string, p: PeerState): PeerReputation {
    return {
      peerId,
      agreements: p.agreements,
      disagreements: p.disagreements,
      timeouts: p.timeouts,
      errors: p.errors,
      flagged: p.flagReason !== undefined,
      ...(p.flagReason === undefined ? {} : { flagReason: p.flagReason }),
      streak: p.streak,
      recentDisagreements: p.shortSum,
      trusted: p.flagReason === undefined && p.streak >= this.trustAfter,
    }
  }

  private fresh(): PeerState {
    return {
      agreements: 0,
      disagreements: 0,
      timeouts: 0,
      errors: 0,
      flagReason: undefined,
      streak: 0,
      ring: new Uint8Array(this.rateWindow),
      head: 0,
      seen: 0,
      shortSum: 0,
      longSum: 0,
    }
  }

  private state(peerId: string): PeerState {
    if (!(typeof peerId === 'string' && peerId.length > 0 && peerId.length <= MAX_PEER_ID_LENGTH)) {
      throw new VerifyError('ERR_VERIFY_INPUT', `peerId must be a string of 1..${MAX_PEER_ID_LENGTH} chars`)
    }
    let p = this.peers.get(peerId)
    if (p === undefined) {
      p = this.fresh()
      this.peers.set(peerId, p)
    }
    return p
  }
}
