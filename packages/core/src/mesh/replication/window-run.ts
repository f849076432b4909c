import type { ConfirmResult } from '../../engine/inference-backend.js'
import type { Tolerance } from '../../verify/tolerance.js'
import type { Member } from './replica-set.js'
import { endOf, type StepRecord } from './step-history.js'
import { noQuorum, type VoteContext } from './vote-step.js'
import {
  type Claim,
  type Dispute,
  type DisputeClaim,
  firstDisagreement,
  replayWindow,
} from './window-check.js'

export interface WindowRunContext {
  readonly vote: VoteContext
  /** The stage's replicas in ask order (askOrder). */
  order(): Member[]
  /** On probation: asked as an extra verifier, never counted towards confirmation. */
  suspect(peerId: string): boolean
  /** The candidates in a seeded random order: which replicas check a window is not predictable. */
  shuffle(list: readonly Member[]): Member[]
  record(peerId: string, agrees: boolean): void
}

interface WindowState {
  readonly steps: StepRecord<Member>[]
  leader: Member | undefined
  dispute: Dispute | undefined
}

interface Verdict {
  readonly m: Member
  readonly claims: Claim[]
  readonly first: number
  readonly tol: Tolerance
}

const OK: ConfirmResult = { ok: true }

/**
 * The window check: f replicas other than the leader(s), of the leader's class group, replay
 * every position from the first unconfirmed step to the current end, and each step they all agree
 * on is confirmed by f + 1 peers (the leader and them). A replica that fails is replaced by the
 * next one. At the first position any of them disputes, the check stops: the positions from there
 * on are unconfirmed and must be rolled back (ConfirmResult.rollbackTo), and a Dispute waits for
 * the vote that re-runs that position to say who was wrong.
 */
export async function checkWindow(
  c: WindowRunContext,
  generationId: string,
  st: WindowState,
  signal: AbortSignal | undefined,
): Promise<ConfirmResult> {
  const { steps } = st
  const first = steps.findIndex((s) => s.leader !== undefined)
  if (first < 0) return OK
  const range = steps.slice(first)
  const head = range[0] as StepRecord<Member>
  const leader = head.leader as Member
  const from = head.input.startPos
  const to = endOf(range)
  const leaders = new Set(range.map((r) => r.leader).filter((m): m is Member => m !== undefined))
  const { vote } = c
  vote.stats.windows++
  const group = c.order().filter((m) => !leaders.has(m) && vote.tolerances.homogeneous(m.cls, leader.cls))
  const clean = group.filter((m) => !c.suspect(m.peerId))
  // Active replicas in a random order, then spares (they join only when needed).
  const candidates = [
    ...c.shuffle(clean.filter((m) => m.state === 'active')),
    ...clean.filter((m) => m.state !== 'active'),
  ]
  const verdicts: Verdict[] = []
  const extra: Verdict[] = []
  const failed: string[] = []
  const ask = async (batch: readonly Member[], into: Verdict[]) => {
    const settled = await Promise.allSettled(
      batch.map((m) => replayWindow(vote, m, generationId, steps, from, to, signal)),
    )
    signal?.throwIfAborted()
    settled.forEach((s, i) => {
      const m = batch[i] as Member
      if (s.status === 'rejected') {
        vote.failed(m, s.reason, failed)
        return
      }
      if (m.state === 'spare') m.state = 'active'
      const tol = vote.tolerances.get(leader.cls, m.cls)
      into.push({ m, claims: s.value, first: firstDisagreement(vote, steps, s.value, tol), tol })
    })
  }
  // Suspects replay the window alongside the first verifiers; their word confirms nothing.
  const probation = ask(
    group.filter((m) => c.suspect(m.peerId)),
    extra,
  )
  let next = 0
  while (verdicts.length < vote.f) {
    const batch = candidates.slice(next, next + vote.f - verdicts.length)
    next += batch.length
    if (batch.length === 0) {
      await probation
      throw noQuorum(vote, verdicts, failed)
    }
    await ask(batch, verdicts)
  }
  await probation
  const q = Math.min(Number.POSITIVE_INFINITY, ...verdicts.map((v) => v.first))
  // A suspect that disputes a position f + 1 others confirmed is outvoted, as in a vote.
  for (const v of extra) {
    if (v.first < q) c.record(v.m.peerId, false)
  }
  const verifiers = verdicts.map((v) => v.m.peerId)
  for (const r of range) {
    if (r.input.startPos + r.input.seqLen > q) break
    if (r.leader === undefined) continue // voted while the window was open: confirmed already
    const by = [r.leader.peerId, ...verifiers]
    r.leader = undefined
    r.confirmedBy = by
    r.asked = by
    for (const id of by) c.record(id, true)
    for (const v of extra) if (v.first >= r.input.startPos + r.input.seqLen) c.record(v.m.peerId, true)
  }
  if (q === Number.POSITIVE_INFINITY) return OK
  st.dispute = disputeAt(vote, range, verdicts, q)
  st.leader = undefined
  vote.stats.rollbacks++
  vote.stats.rolledBackPositions += to - q
  return { ok: false, rollbackTo: q }
}

/** Everyone's word on position q, kept for the vote that re-runs it. */
function disputeAt(
  vote: VoteContext,
  range: readonly StepRecord<Member>[],
  verdicts: Verdict[],
  q: number,
): Dispute {
  const h = vote.hiddenSize
  const rec = range.find(
    (r) => q >= r.input.startPos && q < r.input.startPos + r.input.seqLen,
  ) as StepRecord<Member>
  const at = q - rec.input.startPos
  const leaderId = (rec.leader ?? rec.asked[0]) as Member | string
  const leader = typeof leaderId === 'string' ? leaderId : leaderId.peerId
  const claims: DisputeClaim[] = [
    vote.isLast
      ? { peerId: leader, token: vote.tokenOf(rec.out) }
      : { peerId: leader, ...(rec.out.hidden ? { row: rec.out.hidden.slice(at * h, (at + 1) * h) } : {}) },
  ]
  for (const v of verdicts) {
    const cl = v.claims.find((x) => q >= x.startPos && q < x.startPos + x.seqLen)
    const row = q - (cl?.startPos ?? q)
    if (cl === undefined) claims.push({ peerId: v.m.peerId })
    else if (cl.tokenRows !== undefined)
      claims.push({ peerId: v.m.peerId, tokenRows: cl.tokenRows, tokenRow: row })
    else if (cl.token !== undefined) claims.push({ peerId: v.m.peerId, token: cl.token })
    else if (cl.fingerprint !== undefined)
      claims.push({ peerId: v.m.peerId, fingerprint: cl.fingerprint, fingerprintRow: row })
    else if (cl.hidden !== undefined)
      claims.push({ peerId: v.m.peerId, row: cl.hidden.slice(row * h, (row + 1) * h) })
    else claims.push({ peerId: v.m.peerId })
  }
  const input =
    rec.input.tokens !== undefined
      ? (rec.input.tokens[at] as number)
      : (rec.input.hidden as Float32Array).slice(at * h, (at + 1) * h)
  return {
    position: q,
    leader,
    input,
    claims,
    tol: verdicts[0]?.tol ?? { relative: 1e-4, indexOverlap: 0.75 },
  }
}
