import type { ConfirmResult, StageStepInput, StageStepOutput } from '../../engine/inference-backend.js'
import type { ReputationBook } from '../../verify/reputation.js'
import type { ToleranceTable } from '../../verify/tolerance.js'
import { askOrder, type Member } from './replica-set.js'
import type { StepRecord } from './step-history.js'
import { retireFlagged } from './vote-step.js'
import { type Dispute, sameInput, settleDispute } from './window-check.js'

/** One generation at a replicated stage. */
export interface GenerationState {
  readonly steps: StepRecord<Member>[]
  /** The trusted peer running decode steps ahead, while it keeps its record. */
  leader: Member | undefined
  /** Peers that may not lead this generation again (caught, or in a mismatch no vote could settle). */
  readonly noLead: Set<string>
  /** A window mismatch waiting for the vote on its position. */
  dispute: Dispute | undefined
  /** The window check in flight. */
  check: Promise<ConfirmResult> | undefined
}

/** What the stage's choices of who leads and who votes depend on. */
export interface StagePolicy {
  readonly members: readonly Member[]
  readonly f: number
  readonly maxReplicas: number
  readonly hiddenSize: number
  readonly book: ReputationBook
  readonly tolerances: ToleranceTable
  /** The stage's seeded draw in [0, 1). */
  readonly rng: () => number
  readonly tokenOf: (out: StageStepOutput) => number
}

/**
 * The generation's leader: kept while it keeps a clean record, otherwise drawn at random (the
 * stage's seeded rng) among the trusted peers of the voting group, so no claim about memory or
 * speed buys the place. None when no peer is trusted yet, or too few others could check it.
 */
export function leaderFor(p: StagePolicy, st: GenerationState): Member | undefined {
  const order = askOrder(p.members, p.tolerances, p.book)
  const head = order[0]
  if (head === undefined) return undefined
  const group = order.filter((m) => p.tolerances.homogeneous(m.cls, head.cls))
  if (group.length < p.f + 1) return undefined
  const fit = (m: Member) =>
    group.includes(m) && p.book.get(m.peerId)?.trusted === true && !st.noLead.has(m.peerId)
  if (st.leader !== undefined && fit(st.leader)) return st.leader
  const candidates = group.filter(fit)
  if (candidates.length === 0) return undefined
  st.leader = candidates[Math.min(candidates.length - 1, Math.floor(p.rng() * candidates.length))]
  return st.leader
}

/** The members in a seeded random order (Fisher-Yates on the stage's rng). */
export function shuffled<T>(list: readonly T[], rng: () => number): T[] {
  const out = [...list]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(rng() * (i + 1)))
    ;[out[i], out[j]] = [out[j] as T, out[i] as T]
  }
  return out
}

/**
 * Who to ask for a vote, and how many at first: the best record of the voting group (it ships
 * the full state: a new peer never does while a proven one is there), then the others of the
 * group in a seeded random order, so every replica is checked now and then and none can tell
 * when, then every suspect (a peer on probation is asked along with them, so a repeat liar is seen
 * again soon), then the rest for escalation. The leader of a disputed window goes last: the vote
 * that settles the dispute must not hinge on it.
 */
export function voteOrder(
  p: StagePolicy,
  base: number,
  exclude: string | undefined,
): { order: Member[]; want: number } {
  const all = askOrder(p.members, p.tolerances, p.book)
  const last = all.filter((m) => m.peerId === exclude)
  const rest = all.filter((m) => m.peerId !== exclude)
  const head = rest[0]
  const suspect = (m: Member) =>
    head !== undefined && p.book.isSuspect(m.peerId) && p.tolerances.homogeneous(m.cls, head.cls)
  const ranked = rest.filter((m) => !suspect(m))
  const group = ranked.filter((m) => head !== undefined && p.tolerances.homogeneous(m.cls, head.cls))
  const others = ranked.filter((m) => !group.includes(m))
  // Spares stay last: they join only when an active replica is gone.
  const active = group.slice(1).filter((m) => m.state === 'active')
  const spares = group.slice(1).filter((m) => m.state !== 'active')
  const clean = [...group.slice(0, 1), ...shuffled(active, p.rng), ...spares, ...others]
  const suspects = rest.filter(suspect)
  const order = [...clean.slice(0, base), ...suspects, ...clean.slice(base), ...last]
  // Suspects come on top of the vote's usual size: probation must not cost an honest seat.
  return { order, want: Math.min(p.maxReplicas, base) + suspects.length }
}

/**
 * The vote on a disputed position says who was wrong, when the position's input came back the
 * same: a peer whose answer there contradicts what f + 1 others agreed on is proven to have lied.
 */
export function settle(
  p: StagePolicy,
  st: GenerationState,
  d: Dispute,
  input: StageStepInput,
  accepted: StageStepOutput,
): void {
  if (!sameInput(d, input, p.hiddenSize)) {
    st.noLead.add(d.leader)
    return
  }
  for (const { peerId, agrees } of settleDispute(d, accepted, p.tokenOf, p.hiddenSize)) {
    if (agrees) p.book.record(peerId, 'agree')
    else {
      p.book.recordProven(peerId)
      st.noLead.add(peerId)
    }
  }
  retireFlagged(
    p.book,
    p.members.map((m) => ({ m })),
  )
}
