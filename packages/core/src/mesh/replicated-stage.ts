import type { StageSession, StageStepInput, StageStepOutput } from '../engine/inference-backend.js'
import { GenerationError, VerifyError } from '../errors.js'
import type { TopKLogits } from '../sampler.js'
import type { ReputationBook } from '../verify/reputation.js'
import { ToleranceTable } from '../verify/tolerance.js'
import { type HiddenReply, type TokenReply, voteHidden, voteToken } from '../verify/vote.js'
import {
  askOrder,
  type Member,
  type Replica,
  type ReplicaStatus,
  retire,
  syncAndStep,
  toMembers,
} from './replication/replica-set.js'

export type { Replica, ReplicaState, ReplicaStatus } from './replication/replica-set.js'

export interface ReplicatedStageInit {
  readonly layerStart: number
  readonly layerEnd: number
  readonly isFirst: boolean
  readonly isLast: boolean
  readonly hiddenSize: number
  /** Faults tolerated: each step goes to r = 2f + 1 replicas and needs f + 1 agreeing. */
  readonly f: number
  /** Most replies counted in one step when escalating after a failed vote; default (and minimum) 2f + 1. */
  readonly maxReplicas?: number
  /** Pipeline stage index, named in errors. */
  readonly stage: number
  /** Per replica call (each replayed step too); none by default (RemoteStage has its own). */
  readonly stepTimeoutMs?: number
}

export interface ReplicatedStageComponents {
  readonly replicas: readonly Replica[]
  /** Asked when replicas fail or are flagged; they rebuild their KV cache by replay. */
  readonly spares?: readonly Replica[]
  readonly tolerances: ToleranceTable
  readonly reputation: ReputationBook
  /** Uniform in [0, 1), seeded: decides adaptive-replication spot checks. */
  readonly rng: () => number
  /** The token the coordinator would pick from a top-k, without advancing its RNG; default argmax. */
  readonly sampleToken?: (topk: TopKLogits) => number
}

export interface ReplicationStats {
  steps: number
  /** Steps sent to a trusted primary alone. */
  spotChecks: number
  /** Steps that needed more than the first r replies. */
  escalations: number
  /** Earlier steps replayed into replicas that were behind. */
  replayedSteps: number
  /** Replica calls that threw or timed out. */
  failures: number
}

interface Reply {
  readonly m: Member
  readonly out: StageStepOutput
}

/** Greedy pick, refusing a malformed top-k (the coordinator's Sampler would throw on it later). */
function argmaxToken(topk: TopKLogits): number {
  const { values, ids } = topk
  if (!(values instanceof Float32Array && ids instanceof Int32Array) || values.length === 0) return -1
  if (ids.length !== values.length) return -1
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number
    if (Number.isNaN(v) || (i > 0 && v > (values[i - 1] as number))) return -1
  }
  return ids[0] as number
}

/**
 * One pipeline stage served by several untrusted replicas; a Pipeline of these runs under
 * generate() unchanged. Hidden outputs are voted with voteHidden (full states), the last stage's
 * by exact agreement on the token its top-k yields. Outcomes go to the ReputationBook; flagged or
 * failed replicas are retired and the next usable one (often a spare) takes their place, catching
 * up on the generation by replaying this stage's earlier inputs. Replicas skipped by a spot check
 * fall behind the same way and catch up when next asked.
 */
export class ReplicatedStage implements StageSession {
  readonly layerStart: number
  readonly layerEnd: number
  readonly isFirst: boolean
  readonly isLast: boolean
  readonly stats: ReplicationStats = {
    steps: 0,
    spotChecks: 0,
    escalations: 0,
    replayedSteps: 0,
    failures: 0,
  }
  private readonly members: Member[]
  private readonly f: number
  private readonly maxReplicas: number
  /** Per generation, every step input this stage accepted, in order: what a replacement replays. */
  private readonly history = new Map<string, StageStepInput[]>()
  private readonly sampleToken: (topk: TopKLogits) => number

  constructor(
    private readonly init: ReplicatedStageInit,
    private readonly c: ReplicatedStageComponents,
  ) {
    const bad = (msg: string) => new VerifyError('ERR_VERIFY_INPUT', msg)
    const { f, hiddenSize, stage, stepTimeoutMs } = init
    if (!(Number.isInteger(f) && f >= 0)) throw bad(`f must be a non-negative integer, got ${String(f)}`)
    if (!(Number.isInteger(hiddenSize) && hiddenSize >= 1)) throw bad('hiddenSize must be a positive integer')
    if (!(Number.isInteger(stage) && stage >= 0)) throw bad('stage must be a non-negative integer')
    if (!(Number.isInteger(init.layerStart) && init.layerEnd > init.layerStart)) throw bad('bad layer range')
    this.maxReplicas = init.maxReplicas ?? 2 * f + 1
    if (!(Number.isInteger(this.maxReplicas) && this.maxReplicas >= 2 * f + 1)) {
      throw bad(`maxReplicas must be an integer >= 2f + 1 = ${2 * f + 1}`)
    }
    if (stepTimeoutMs !== undefined && !(Number.isFinite(stepTimeoutMs) && stepTimeoutMs > 0)) {
      throw bad('stepTimeoutMs must be a positive number')
    }
    if (!(c.tolerances instanceof ToleranceTable)) throw bad('tolerances must be a ToleranceTable')
    if (typeof c.rng !== 'function') throw bad('rng must be a function')
    this.f = f
    this.layerStart = init.layerStart
    this.layerEnd = init.layerEnd
    this.isFirst = init.isFirst
    this.isLast = init.isLast
    this.members = toMembers(c.replicas, c.spares ?? [], init)
    this.sampleToken = c.sampleToken ?? argmaxToken
  }

  get activeGenerations(): number {
    return this.history.size
  }

  /** Every replica and spare with its state, for /health and tests. */
  replicas(): ReplicaStatus[] {
    return this.members.map(({ peerId, cls, state }) => ({ peerId, cls, state }))
  }

  async step(generationId: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    signal?.throwIfAborted()
    const history = this.history.get(generationId) ?? []
    const positions = history.reduce((n, s) => n + s.seqLen, 0)
    if (input.startPos !== positions) {
      throw new GenerationError(
        'ERR_STEP_ORDER',
        `stage ${this.init.stage}, generation ${generationId}: step starts at ${input.startPos}, expected ${positions}`,
      )
    }
    if (!this.history.has(generationId)) this.history.set(generationId, history)
    this.stats.steps++
    const order = askOrder(this.members, this.c.tolerances, this.c.reputation)
    const primary = order[0]
    const r = 2 * this.f + 1
    let want = primary !== undefined && !this.c.reputation.shouldReplicate(primary.peerId, this.c.rng) ? 1 : r
    const replies: Reply[] = []
    let next = 0
    const timedOut: string[] = []
    for (;;) {
      const batch: Member[] = []
      while (replies.length + batch.length < want && next < order.length) batch.push(order[next++] as Member)
      const settled = await Promise.allSettled(
        batch.map((m) => syncAndStep(m, generationId, history, input, this.init.stepTimeoutMs, signal)),
      )
      signal?.throwIfAborted()
      settled.forEach((s, i) => {
        const m = batch[i] as Member
        if (s.status === 'fulfilled') {
          if (m.state === 'spare') m.state = 'active'
          this.stats.replayedSteps += s.value.replayed
          replies.push({ m, out: s.value.out })
        } else {
          this.stats.failures++
          timedOut.push(m.peerId)
          this.c.reputation.record(m.peerId, 'timeout')
          retire(m, 'failed')
        }
      })
      if (want === 1 && r > 1 && replies.length === 0) want = r // the trusted primary failed: replicate
      if (replies.length < want && next < order.length) continue // replace the ones that failed
      const accepted = this.decide(replies, want === 1 && r > 1, input.seqLen)
      if (accepted !== undefined) {
        if (want === 1 && r > 1) this.stats.spotChecks++
        history.push(input)
        return accepted
      }
      if (want === 1 && r > 1)
        want = r // the trusted primary's answer was unusable: replicate
      else if (replies.length < this.maxReplicas && next < order.length) {
        this.stats.escalations++
        want = Math.min(this.maxReplicas, replies.length + 1)
      } else throw this.noQuorum(replies, timedOut)
    }
  }

  endGeneration(generationId: string): void {
    this.history.delete(generationId)
    for (const m of this.members) {
      m.synced.delete(generationId)
      try {
        m.session.endGeneration(generationId)
      } catch {
        // a replica that is gone holds nothing
      }
    }
  }

  /** Disposes every replica and spare: the stage owns them. */
  async dispose(): Promise<void> {
    this.history.clear()
    await Promise.allSettled(this.members.map((m) => m.session.dispose()))
  }

  /** The accepted output, or undefined when the replies reach no quorum. */
  private decide(replies: Reply[], spotCheck: boolean, seqLen: number): StageStepOutput | undefined {
    if (replies.length === 0) return undefined
    if (spotCheck) {
      // A trusted primary answering alone is taken on trust, but only if it is well-formed.
      const only = replies[0] as Reply
      return this.wellFormed(only.out, seqLen) ? only.out : undefined
    }
    const book = this.c.reputation
    if (this.isLast) {
      const tokens: TokenReply[] = replies.map(({ m, out }) => ({
        peerId: m.peerId,
        token: this.tokenOf(out),
      }))
      const vote = voteToken(tokens, this.f)
      if (!vote.ok) return undefined
      book.recordVote(vote)
      this.retireFlagged(replies)
      // The first agreeing reply in ask order: the primary's, when it is honest.
      return replies.find((_, i) => tokens[i]?.token === vote.token)?.out
    }
    const hidden: HiddenReply[] = replies.map(({ m, out }) => ({
      peerId: m.peerId,
      cls: m.cls,
      ...(out.hidden instanceof Float32Array ? { full: out.hidden } : {}),
    }))
    const vote = voteHidden(hidden, this.f, this.c.tolerances, { seqLen, hiddenSize: this.init.hiddenSize })
    if (!vote.ok) return undefined
    book.recordVote(vote)
    this.retireFlagged(replies)
    return { hidden: vote.accepted.hidden }
  }

  private tokenOf(out: StageStepOutput): number {
    if (out.topk === undefined) return -1
    try {
      const t = this.sampleToken(out.topk)
      return Number.isSafeInteger(t) && t >= 0 ? t : -1
    } catch {
      return -1 // a malformed top-k is a disagreement, not a crash
    }
  }

  private wellFormed(out: StageStepOutput, seqLen: number): boolean {
    if (this.isLast) return this.tokenOf(out) >= 0
    const h = out.hidden
    return h instanceof Float32Array && h.length === seqLen * this.init.hiddenSize && h.every(Number.isFinite)
  }

  private retireFlagged(replies: Reply[]): void {
    for (const { m } of replies) if (this.c.reputation.isFlagged(m.peerId)) retire(m, 'flagged')
  }

  /** Without quorum no reply is known to be right, so every peer that answered or failed is named. */
  private noQuorum(replies: Reply[], failed: string[]): VerifyError {
    const { stage } = this.init
    const peers = [...replies.map(({ m }) => m.peerId), ...failed]
    return new VerifyError(
      'ERR_NO_QUORUM',
      `stage ${stage}: no ${this.f + 1} of ${replies.length} replies agree` +
        `${failed.length > 0 ? ` (${failed.length} replicas failed)` : ''}; peers: ${peers.join(', ') || 'none'}`,
      { stage, peers },
    )
  }
}
