import type { TopKLogits } from '../base/top-k-logits.js'
import type {
  StageSession,
  StageStepInput,
  StageStepOutput,
  StepProvenance,
} from '../engine/inference-backend.js'
import { ShapedStage } from '../engine/stage-shape.js'
import { GenerationError, VerifyError } from '../errors.js'
import { ToleranceTable } from '../verify/tolerance.js'
import { type TokenReply, voteHidden, voteToken } from '../verify/vote.js'
import {
  askOrder,
  fetchWithTimeout,
  type Member,
  type ReplicaStatus,
  retire,
  syncAndStep,
  toMembers,
} from './replication/replica-set.js'
import type {
  ReplicatedStageComponents,
  ReplicatedStageInit,
  ReplicationStats,
} from './replication/replication-options.js'
import { argmaxToken, hiddenReply, type Reply, randomChallenge } from './replication/replies.js'

export type { Replica, ReplicaState, ReplicaStatus } from './replication/replica-set.js'

export type {
  ReplicatedStageComponents,
  ReplicatedStageInit,
  ReplicationStats,
} from './replication/replication-options.js'

/**
 * One pipeline stage served by several untrusted replicas; a Pipeline of these runs under
 * generate() unchanged. Hidden outputs are voted with voteHidden: the first replica asked ships its
 * full state, the others fingerprints under their own secret challenges, and when those do not
 * confirm the full state the most-supported fingerprint's full state is fetched and the vote
 * retried. The last stage's replies are voted by exact agreement on the token their top-k yields. Outcomes go to the ReputationBook; flagged or
 * failed replicas are retired and the next usable one (often a spare) takes their place, catching
 * up on the generation by replaying this stage's earlier inputs. Replicas skipped by a spot check
 * fall behind the same way and catch up when next asked.
 */
export class ReplicatedStage extends ShapedStage implements StageSession {
  readonly stats: ReplicationStats = {
    steps: 0,
    spotChecks: 0,
    escalations: 0,
    replayedSteps: 0,
    failures: 0,
    fingerprints: 0,
    fetches: 0,
  }
  private readonly members: Member[]
  private readonly f: number
  private readonly maxReplicas: number
  /** Per generation, every step input this stage accepted, in order: what a replacement replays. */
  private readonly history = new Map<string, StageStepInput[]>()
  /** Per generation, who computed its latest accepted step and how the vote went. */
  private readonly lastVote = new Map<string, StepProvenance>()
  private readonly sampleToken: (topk: TopKLogits) => number
  private readonly challenge: () => number
  private readonly fingerprints: boolean

  constructor(
    private readonly init: ReplicatedStageInit,
    private readonly c: ReplicatedStageComponents,
  ) {
    super(init)
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
    this.members = toMembers(c.replicas, c.spares ?? [], init)
    this.sampleToken = c.sampleToken ?? argmaxToken
    this.challenge = c.challenge ?? randomChallenge
    this.fingerprints = init.fingerprints ?? true
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
    const failed: string[] = []
    let next = 0
    let fullAsked = false
    for (;;) {
      const batch: Member[] = []
      while (replies.length + batch.length < want && next < order.length) batch.push(order[next++] as Member)
      // One replica (the first asked) ships its full state; the others a fingerprint of theirs.
      const asks = batch.map((m): StageStepInput => {
        if (this.isLast || !fullAsked || !this.fingerprints || typeof m.session.fetchHidden !== 'function') {
          fullAsked = true
          return input
        }
        this.stats.fingerprints++
        return { ...input, fingerprint: { challenge: this.challenge() } }
      })
      const settled = await Promise.allSettled(
        batch.map((m, i) =>
          syncAndStep(m, generationId, history, asks[i] as StageStepInput, this.init.stepTimeoutMs, signal),
        ),
      )
      signal?.throwIfAborted()
      settled.forEach((s, i) => {
        const m = batch[i] as Member
        if (s.status === 'fulfilled') {
          if (m.state === 'spare') m.state = 'active'
          this.stats.replayedSteps += s.value.replayed
          replies.push({ m, out: s.value.out })
        } else this.failed(m, s.reason, failed)
      })
      if (want === 1 && r > 1 && replies.length === 0) want = r // the trusted primary failed: replicate
      if (replies.length < want && next < order.length) continue // replace the ones that failed
      const spotCheck = want === 1 && r > 1
      const accepted = await this.decide(replies, spotCheck, generationId, input, failed, signal)
      if (accepted !== undefined) {
        if (spotCheck) this.stats.spotChecks++
        history.push(input)
        return accepted
      }
      if (spotCheck)
        want = r // the trusted primary's answer was unusable: replicate
      else if (replies.length < this.maxReplicas && next < order.length) {
        this.stats.escalations++
        want = Math.min(this.maxReplicas, replies.length + 1)
      } else throw this.noQuorum(replies, failed)
    }
  }

  // TEMPORARY (h-trunc): keeps StageSession's required truncate typechecking until the owner
  // of ReplicatedStage implements the rollback across its replicas. Replace, do not merge over.
  async truncate(_generationId: string, _length: number, _signal?: AbortSignal): Promise<void> {
    throw new GenerationError('ERR_TRUNCATE', 'ReplicatedStage.truncate is not implemented yet')
  }

  endGeneration(generationId: string): void {
    this.history.delete(generationId)
    this.lastVote.delete(generationId)
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
  private async decide(
    replies: Reply[],
    spotCheck: boolean,
    generationId: string,
    input: StageStepInput,
    failed: string[],
    signal: AbortSignal | undefined,
  ): Promise<StageStepOutput | undefined> {
    if (replies.length === 0) return undefined
    if (spotCheck) {
      // A trusted primary answering alone is taken on trust, but only if it is well-formed.
      const only = replies[0] as Reply
      if (!this.wellFormed(only.out, input.seqLen)) return undefined
      this.lastVote.set(generationId, {
        peers: [only.m.peerId],
        agreeing: [],
        disagreeing: [],
        spotChecked: true,
      })
      return only.out
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
      this.remember(generationId, replies, vote)
      this.retireFlagged(replies)
      // The first agreeing reply in ask order: the primary's, when it is honest.
      return replies.find((_, i) => tokens[i]?.token === vote.token)?.out
    }
    const shape = { seqLen: input.seqLen, hiddenSize: this.init.hiddenSize }
    for (;;) {
      const vote = voteHidden(replies.map(hiddenReply), this.f, this.c.tolerances, shape)
      if (vote.ok) {
        book.recordVote(vote)
        this.remember(generationId, replies, vote)
        this.retireFlagged(replies)
        return { hidden: vote.accepted.hidden }
      }
      // No full state reached quorum (the one shipped may be a lie, or its sender failed): fetch
      // the full state of the most-supported fingerprint and vote again.
      const reply = replies.find((x) => x.m.peerId === vote.askFullFrom[0])
      if (reply === undefined) return undefined
      try {
        reply.full = await fetchWithTimeout(
          reply.m,
          generationId,
          input.startPos,
          this.init.stepTimeoutMs,
          signal,
        )
        this.stats.fetches++
      } catch (err) {
        signal?.throwIfAborted()
        this.failed(reply.m, err, failed)
        replies.splice(replies.indexOf(reply), 1)
      }
    }
  }

  provenance(generationId: string): StepProvenance | undefined {
    return this.lastVote.get(generationId)
  }

  private remember(
    generationId: string,
    replies: Reply[],
    vote: { agreeing: string[]; disagreeing: string[] },
  ): void {
    this.lastVote.set(generationId, {
      peers: replies.map((r) => r.m.peerId),
      agreeing: [...vote.agreeing],
      disagreeing: [...vote.disagreeing],
      spotChecked: false,
    })
  }

  /** A replica that threw or missed its deadline: counted, and out of this stage for good. */
  private failed(m: Member, err: unknown, failed: string[]): void {
    this.stats.failures++
    failed.push(m.peerId)
    const late = (err as { code?: unknown } | null)?.code === 'ERR_STEP_TIMEOUT'
    this.c.reputation.record(m.peerId, late ? 'timeout' : 'error')
    retire(m, 'failed')
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
