import type { TopKLogits } from '../../base/top-k-logits.js'
import type { StageStepInput, StageStepOutput } from '../../engine/inference-backend.js'
import { VerifyError } from '../../errors.js'
import type { ReputationBook } from '../../verify/reputation.js'
import type { ToleranceTable } from '../../verify/tolerance.js'
import { type TokenReply, voteHidden, voteToken } from '../../verify/vote.js'
import { fetchWithTimeout, type Member, retire, syncAndStep } from './replica-set.js'
import type { ReplicationStats } from './replication-options.js'
import { hiddenReply, type Reply } from './replies.js'
import type { StepRecord } from './step-history.js'

/** What a stage's vote needs from the stage. */
export interface VoteContext {
  readonly f: number
  readonly maxReplicas: number
  readonly isLast: boolean
  readonly hiddenSize: number
  readonly stage: number
  readonly stepTimeoutMs: number | undefined
  readonly fingerprints: boolean
  readonly tolerances: ToleranceTable
  readonly book: ReputationBook
  readonly stats: ReplicationStats
  readonly challenge: () => number
  /** The token the coordinator would take from a top-k; -1 when it is malformed. */
  tokenOf(out: StageStepOutput): number
  /** A replica that threw or missed its deadline. */
  failed(m: Member, err: unknown, failed: string[]): void
}

export interface VoteOutcome {
  readonly out: StageStepOutput
  readonly asked: string[]
  readonly agreeing: string[]
  readonly disagreeing: string[]
}

/**
 * One step voted among the stage's replicas: `want` of them are asked first (f + 1 is enough when
 * they all agree), in `order`; when their replies reach no quorum (a lie, or a failure) more are
 * asked, one at a time, up to maxReplicas. Hidden outputs: the first replica asked ships its full
 * state, the others fingerprints under their own secret challenges; when those do not confirm the
 * full state the most-supported fingerprint's full state is fetched and the vote retried. The last
 * stage votes by exact agreement on the token each top-k yields.
 */
export async function voteStep(
  c: VoteContext,
  order: readonly Member[],
  want: number,
  generationId: string,
  steps: readonly StepRecord<Member>[],
  input: StageStepInput,
  signal: AbortSignal | undefined,
): Promise<VoteOutcome> {
  const replies: Reply[] = []
  const failed: string[] = []
  let next = 0
  let fullAsked = false
  for (;;) {
    const batch: Member[] = []
    while (replies.length + batch.length < want && next < order.length) batch.push(order[next++] as Member)
    const asks = batch.map((m): StageStepInput => {
      if (c.isLast || !fullAsked || !c.fingerprints || typeof m.session.fetchHidden !== 'function') {
        fullAsked = true
        return input
      }
      c.stats.fingerprints++
      return { ...input, fingerprint: { challenge: c.challenge() } }
    })
    const settled = await Promise.allSettled(
      batch.map((m, i) =>
        syncAndStep(m, generationId, steps, asks[i] as StageStepInput, c.stepTimeoutMs, signal),
      ),
    )
    signal?.throwIfAborted()
    settled.forEach((s, i) => {
      const m = batch[i] as Member
      if (s.status === 'fulfilled') {
        if (m.state === 'spare') m.state = 'active'
        c.stats.replayedSteps += s.value.replayed
        replies.push({ m, out: s.value.out })
      } else c.failed(m, s.reason, failed)
    })
    if (replies.length < want && next < order.length) continue // replace the ones that failed
    const accepted = await decide(c, replies, generationId, input, failed, signal)
    if (accepted !== undefined) return accepted
    if (replies.length < c.maxReplicas && next < order.length) {
      c.stats.escalations++
      want = Math.min(c.maxReplicas, replies.length + 1)
    } else throw noQuorum(c, replies, failed)
  }
}

/** The accepted output, or undefined when the replies reach no quorum. */
async function decide(
  c: VoteContext,
  replies: Reply[],
  generationId: string,
  input: StageStepInput,
  failed: string[],
  signal: AbortSignal | undefined,
): Promise<VoteOutcome | undefined> {
  if (replies.length === 0) return undefined
  const asked = () => replies.map((r) => r.m.peerId)
  if (c.isLast) {
    const tokens: TokenReply[] = replies.map(({ m, out }) => ({ peerId: m.peerId, token: c.tokenOf(out) }))
    const vote = voteToken(tokens, c.f)
    if (!vote.ok) return undefined
    c.book.recordVote(vote)
    retireFlagged(c.book, replies)
    // The first agreeing reply in ask order: the best-record peer's, when it is honest.
    const out = replies.find((_, i) => tokens[i]?.token === vote.token)?.out as StageStepOutput
    return { out, asked: asked(), agreeing: [...vote.agreeing], disagreeing: [...vote.disagreeing] }
  }
  const shape = { seqLen: input.seqLen, hiddenSize: c.hiddenSize }
  for (;;) {
    const vote = voteHidden(replies.map(hiddenReply), c.f, c.tolerances, shape)
    if (vote.ok) {
      c.book.recordVote(vote)
      retireFlagged(c.book, replies)
      return {
        out: { hidden: vote.accepted.hidden },
        asked: asked(),
        agreeing: [...vote.agreeing],
        disagreeing: [...vote.disagreeing],
      }
    }
    // No full state reached quorum (the one shipped may be a lie, or its sender failed): fetch
    // the full state of the most-supported fingerprint and vote again.
    const reply = replies.find((x) => x.m.peerId === vote.askFullFrom[0])
    if (reply === undefined) return undefined
    try {
      reply.full = await fetchWithTimeout(reply.m, generationId, input.startPos, c.stepTimeoutMs, signal)
      c.stats.fetches++
    } catch (err) {
      signal?.throwIfAborted()
      c.failed(reply.m, err, failed)
      replies.splice(replies.indexOf(reply), 1)
    }
  }
}

export function retireFlagged(book: ReputationBook, replies: ReadonlyArray<{ m: Member }>): void {
  for (const { m } of replies) if (book.isFlagged(m.peerId)) retire(m, 'flagged')
}

/** Without quorum no reply is known to be right, so every peer that answered or failed is named. */
export function noQuorum(
  c: Pick<VoteContext, 'f' | 'stage'>,
  replies: ReadonlyArray<{ m: Member }>,
  failed: readonly string[],
): VerifyError {
  const peers = [...replies.map(({ m }) => m.peerId), ...failed]
  return new VerifyError(
    'ERR_NO_QUORUM',
    `stage ${c.stage}: no ${c.f + 1} of ${replies.length} replies agree` +
      `${failed.length > 0 ? ` (${failed.length} replicas failed)` : ''}; peers: ${peers.join(', ') || 'none'}`,
    { stage: c.stage, peers },
  )
}

/** Greedy pick, refusing a malformed top-k (the coordinator's Sampler would throw on it later). */
export function safeToken(sample: (topk: TopKLogits) => number, out: StageStepOutput): number {
  if (out.topk === undefined) return -1
  try {
    const t = sample(out.topk)
    return Number.isSafeInteger(t) && t >= 0 ? t : -1
  } catch {
    return -1 // a malformed top-k is a disagreement, not a crash
  }
}
