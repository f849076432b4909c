import {
  type ConfirmResult,
  checkTruncateLength,
  type StageSession,
  type StageStepInput,
  type StageStepOutput,
  type StepProvenance,
} from '../engine/inference-backend.js'
import { ShapedStage } from '../engine/stage-shape.js'
import { GenerationError, VerifyError } from '../errors.js'
import { ToleranceTable } from '../verify/tolerance.js'
import {
  askOrder,
  exclusive,
  type Member,
  retire,
  syncAndStep,
  toMembers,
  truncateMember,
} from './replication/replica-set.js'
import type {
  ReplicatedStageComponents,
  ReplicatedStageInit,
  ReplicationStats,
} from './replication/replication-options.js'
import { argmaxToken, randomChallenge } from './replication/replies.js'
import {
  type GenerationState,
  leaderFor,
  type StagePolicy,
  settle,
  shuffled,
  voteOrder,
} from './replication/stage-policy.js'
import { confirmedEnd, endOf, provenanceOf, truncateSteps } from './replication/step-history.js'
import { retireFlagged, safeToken, type VoteContext, voteStep } from './replication/vote-step.js'
import { checkWindow } from './replication/window-run.js'

export type { Replica, ReplicaState, ReplicaStatus } from './replication/replica-set.js'

export type {
  ReplicatedStageComponents,
  ReplicatedStageInit,
  ReplicationStats,
} from './replication/replication-options.js'

/**
 * One pipeline stage served by several untrusted replicas; a Pipeline of these runs under
 * generate() unchanged. No output is ever taken on trust: with windowed verification a peer with
 * a clean record leads decode steps alone, and generate() releases a token only once f other
 * replicas have replayed the window it depends on (one merged step, fingerprinted per row under
 * their own secret challenges) and agreed; a mismatch rolls every stage back to its position, the
 * position is voted afresh, and the vote settles who lied. Prefill, and every step while no peer
 * is trusted, is voted by f + 1 replicas, more when they disagree (vote-step.ts). Outcomes go to
 * the ReputationBook; flagged or failed replicas are retired and spares take their place,
 * catching up by replaying this stage's accepted inputs.
 */
export class ReplicatedStage extends ShapedStage implements StageSession {
  readonly stats: ReplicationStats = {
    steps: 0,
    ahead: 0,
    windows: 0,
    rollbacks: 0,
    rolledBackPositions: 0,
    escalations: 0,
    replayedSteps: 0,
    failures: 0,
    fingerprints: 0,
    fetches: 0,
  }
  private readonly members: Member[]
  private readonly f: number
  private readonly gens = new Map<string, GenerationState>()
  private readonly windowed: boolean
  private readonly window: number
  private readonly vote: VoteContext
  private readonly policy: StagePolicy

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
    const maxReplicas = init.maxReplicas ?? 2 * f + 1
    if (!(Number.isInteger(maxReplicas) && maxReplicas >= 2 * f + 1)) {
      throw bad(`maxReplicas must be an integer >= 2f + 1 = ${2 * f + 1}`)
    }
    if (stepTimeoutMs !== undefined && !(Number.isFinite(stepTimeoutMs) && stepTimeoutMs > 0)) {
      throw bad('stepTimeoutMs must be a positive number')
    }
    const verification = init.verification ?? 'windowed'
    if (verification !== 'windowed' && verification !== 'every-step') {
      throw bad(`verification must be 'windowed' or 'every-step', got ${String(verification)}`)
    }
    this.window = init.window ?? 8
    if (!(Number.isInteger(this.window) && this.window >= 1 && this.window <= 512)) {
      throw bad(`window must be an integer in [1, 512], got ${String(init.window)}`)
    }
    if (!(c.tolerances instanceof ToleranceTable)) throw bad('tolerances must be a ToleranceTable')
    if (typeof c.rng !== 'function') throw bad('rng must be a function')
    this.f = f
    this.windowed = verification === 'windowed'
    this.members = toMembers(c.replicas, c.spares ?? [], init)
    const sample = c.sampleToken ?? argmaxToken
    this.vote = {
      f,
      maxReplicas,
      isLast: init.isLast,
      hiddenSize,
      stage,
      stepTimeoutMs,
      fingerprints: init.fingerprints ?? true,
      tolerances: c.tolerances,
      book: c.reputation,
      stats: this.stats,
      challenge: c.challenge ?? randomChallenge,
      tokenOf: (out) => safeToken(sample, out),
      failed: (m, err, failed) => this.failed(m, err, failed),
    }
    this.policy = {
      members: this.members,
      f,
      maxReplicas,
      hiddenSize,
      book: c.reputation,
      tolerances: c.tolerances,
      rng: c.rng,
      tokenOf: this.vote.tokenOf,
    }
  }

  get activeGenerations(): number {
    return this.gens.size
  }

  /** Every replica and spare with its state, for /health and tests. */
  replicas(): Array<{ peerId: string; cls: string; state: string }> {
    return this.members.map(({ peerId, cls, state }) => ({ peerId, cls, state }))
  }

  async step(generationId: string, asked: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    signal?.throwIfAborted()
    // Every replica answers with all its candidates, whatever the caller needs: votes compare them.
    const { candidates: _limit, ...input } = asked
    const st = this.state(generationId)
    const expected = endOf(st.steps)
    if (input.startPos !== expected) {
      throw new GenerationError(
        'ERR_STEP_ORDER',
        `stage ${this.init.stage}, generation ${generationId}: step starts at ${input.startPos}, expected ${expected}`,
      )
    }
    this.stats.steps++
    // Decode steps may run ahead on a trusted leader; a prefill is voted, so the first token
    // needs no window (time to first token stays that of one replica).
    // A step past a pending dispute (decoding went on while the window was checked) will be
    // rolled back; the dispute waits for the vote on its own position.
    const dispute = st.dispute?.position === input.startPos ? st.dispute : undefined
    if (this.windowed && input.seqLen === 1 && dispute === undefined) {
      const out = await this.runAhead(generationId, st, input, signal)
      if (out !== undefined) return out
    }
    if (dispute !== undefined) st.dispute = undefined
    // A voted step goes to all 2f + 1 (f + 1 agreeing decide it): votes happen only until some
    // peer is trusted, on the prefill and to settle disputes, and every replica is seen in them.
    const base = 2 * this.f + 1
    const { order, want } = voteOrder(this.policy, base, dispute?.leader)
    const v = await voteStep(this.vote, order, want, generationId, st.steps, input, signal)
    if (dispute !== undefined) settle(this.policy, st, dispute, input, v.out)
    st.steps.push({
      input,
      out: v.out,
      leader: undefined,
      confirmedBy: v.agreeing,
      asked: v.asked,
      disagreeing: v.disagreeing,
      how: 'vote',
    })
    return v.out
  }

  confirmedLength(generationId: string): number {
    const st = this.gens.get(generationId)
    return st === undefined ? 0 : confirmedEnd(st.steps)
  }

  confirmDue(generationId: string): boolean {
    const st = this.gens.get(generationId)
    return st !== undefined && endOf(st.steps) - confirmedEnd(st.steps) >= this.window
  }

  /** Checks every step run ahead and not yet confirmed (see window-run.ts). */
  confirm(generationId: string, signal?: AbortSignal): Promise<ConfirmResult> {
    const st = this.gens.get(generationId)
    if (st === undefined) return Promise.resolve({ ok: true })
    st.check ??= checkWindow(
      {
        vote: this.vote,
        order: () => askOrder(this.members, this.c.tolerances, this.c.reputation),
        suspect: (peerId) => this.c.reputation.isSuspect(peerId),
        shuffle: (list) => shuffled(list, this.c.rng),
        record: (peerId, agrees) => this.c.reputation.record(peerId, agrees ? 'agree' : 'disagree'),
      },
      generationId,
      st,
      signal,
    ).finally(() => {
      st.check = undefined
      retireFlagged(
        this.c.reputation,
        this.members.map((m) => ({ m })),
      )
    })
    return st.check
  }

  /** Rolls the generation back to `length` positions here and on every replica that holds more. */
  async truncate(generationId: string, length: number, signal?: AbortSignal): Promise<void> {
    checkTruncateLength(generationId, length)
    const st = this.gens.get(generationId)
    if (st === undefined) return
    truncateSteps(st.steps, length)
    // A dispute past the new end is moot: its input may come back different.
    if (st.dispute !== undefined && st.dispute.position > length) st.dispute = undefined
    const failed: string[] = []
    await Promise.all(
      this.members.map((m) =>
        exclusive(m, generationId, () => truncateMember(m, generationId, length, signal)).catch((err) => {
          if (m.state === 'active' || m.state === 'spare') this.failed(m, err, failed)
        }),
      ),
    )
  }

  provenance(generationId: string, position?: number): StepProvenance | undefined {
    const steps = this.gens.get(generationId)?.steps
    if (steps === undefined || steps.length === 0) return undefined
    const step =
      position === undefined
        ? steps[steps.length - 1]
        : steps.find((s) => position >= s.input.startPos && position < s.input.startPos + s.input.seqLen)
    return step === undefined ? undefined : provenanceOf(step)
  }

  endGeneration(generationId: string): void {
    this.gens.delete(generationId)
    for (const m of this.members) {
      m.synced.delete(generationId)
      m.busy.delete(generationId)
      try {
        m.session.endGeneration(generationId)
      } catch {
        // a replica that is gone holds nothing
      }
    }
  }

  /** Disposes every replica and spare: the stage owns them. */
  async dispose(): Promise<void> {
    this.gens.clear()
    await Promise.allSettled(this.members.map((m) => m.session.dispose()))
  }

  private state(generationId: string): GenerationState {
    let st = this.gens.get(generationId)
    if (st === undefined) {
      st = { steps: [], leader: undefined, noLead: new Set(), dispute: undefined, check: undefined }
      this.gens.set(generationId, st)
    }
    return st
  }

  /** The step on the generation's trusted leader alone, or undefined when it must be voted. */
  private async runAhead(
    generationId: string,
    st: GenerationState,
    input: StageStepInput,
    signal: AbortSignal | undefined,
  ): Promise<StageStepOutput | undefined> {
    const leader = leaderFor(this.policy, st)
    if (leader === undefined) return undefined
    try {
      const { out, replayed } = await syncAndStep(
        leader,
        generationId,
        st.steps,
        input,
        this.init.stepTimeoutMs,
        signal,
      )
      this.stats.replayedSteps += replayed
      if (this.wellFormed(out, input.seqLen)) {
        this.stats.ahead++
        st.steps.push({
          input,
          out,
          leader,
          confirmedBy: [],
          asked: [leader.peerId],
          disagreeing: [],
          how: 'window',
        })
        return out
      }
      // A malformed answer is wrong whatever the truth.
      this.c.reputation.record(leader.peerId, 'disagree')
      retireFlagged(this.c.reputation, [{ m: leader }])
    } catch (err) {
      signal?.throwIfAborted()
      this.failed(leader, err, [])
    }
    st.noLead.add(leader.peerId)
    st.leader = undefined
    return undefined
  }

  /** A replica that threw or missed its deadline: counted, and out of this stage for good. */
  private failed(m: Member, err: unknown, failed: string[]): void {
    this.stats.failures++
    failed.push(m.peerId)
    const late = (err as { code?: unknown } | null)?.code === 'ERR_STEP_TIMEOUT'
    this.c.reputation.record(m.peerId, late ? 'timeout' : 'error')
    retire(m, 'failed')
  }

  private wellFormed(out: StageStepOutput, seqLen: number): boolean {
    if (this.isLast) return this.vote.tokenOf(out) >= 0
    const h = out.hidden
    return h instanceof Float32Array && h.length === seqLen * this.init.hiddenSize && h.every(Number.isFinite)
  }
}
