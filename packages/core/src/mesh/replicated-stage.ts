import {
  checkTruncateLength,
  type ConfirmResult,
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
  confirmedEnd,
  endOf,
  provenanceOf,
  type StepRecord,
  truncateSteps,
} from './replication/step-history.js'
import { retireFlagged, safeToken, type VoteContext, voteStep } from './replication/vote-step.js'
import { type Dispute, sameInput, settleDispute } from './replication/window-check.js'
import { checkWindow } from './replication/window-run.js'

export type { Replica, ReplicaState, ReplicaStatus } from './replication/replica-set.js'

export type {
  ReplicatedStageComponents,
  ReplicatedStageInit,
  ReplicationStats,
} from './replication/replication-options.js'

/** One generation at this stage. */
export interface GenerationState {
  readonly steps: StepRecord<Member>[]
  /** The trusted peer running decode steps ahead, while it keeps its record. */
  leader: Member | undefined
  /** Peers that may not lead this generation again (a mismatch no vote could settle). */
  readonly noLead: Set<string>
  /** A window mismatch waiting for the vote on its position. */
  dispute: Dispute | undefined
  /** The window check in flight. */
  check: Promise<ConfirmResult> | undefined
}

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
  }

  get activeGenerations(): number {
    return this.gens.size
  }

  /** Every replica and spare with its state, for /health and tests. */
  replicas(): Array<{ peerId: string; cls: string; state: string }> {
    return this.members.map(({ peerId, cls, state }) => ({ peerId, cls, state }))
  }

  async step(generationId: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    signal?.throwIfAborted()
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
    if (this.windowed && input.seqLen === 1 && st.dispute === undefined) {
      const out = await this.runAhead(generationId, st, input, signal)
      if (out !== undefined) return out
    }
    const dispute = st.dispute?.position === input.startPos ? st.dispute : undefined
    st.dispute = undefined
    // f + 1 agreeing replies decide a decode step; a prefill (one step, that every later token
    // depends on) is put to all 2f + 1, so a peer that lies only there is always seen.
    const base = !this.windowed || input.seqLen > 1 ? 2 * this.f + 1 : this.f + 1
    const { order, want } = this.voteOrder(base, dispute?.leader)
    const v = await voteStep(this.vote, order, want, generationId, st.steps, input, signal)
    if (dispute !== undefined) this.settle(st, dispute, input, v.out)
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
    const leader = this.leaderFor(st)
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

  /**
   * The generation's leader: kept while it keeps a clean record, otherwise drawn at random (the
   * stage's seeded rng) among the trusted peers of the voting group, so no claim about memory or
   * speed buys the place. None when no peer is trusted yet, or too few others could check it.
   */
  private leaderFor(st: GenerationState): Member | undefined {
    const book = this.c.reputation
    const order = askOrder(this.members, this.c.tolerances, book)
    const head = order[0]
    if (head === undefined) return undefined
    const group = order.filter((m) => this.c.tolerances.homogeneous(m.cls, head.cls))
    if (group.length < this.f + 1) return undefined
    const fit = (m: Member) =>
      group.includes(m) && book.get(m.peerId)?.trusted === true && !st.noLead.has(m.peerId)
    if (st.leader !== undefined && fit(st.leader)) return st.leader
    const candidates = group.filter(fit)
    if (candidates.length === 0) return undefined
    st.leader = candidates[Math.min(candidates.length - 1, Math.floor(this.c.rng() * candidates.length))]
    return st.leader
  }

  /**
   * Who to ask for a vote, and how many at first: the `base` best records of the voting group,
   * then every suspect (a peer on probation is asked along with them, so a repeat liar is seen
   * again soon), then the rest for escalation. The leader of a disputed window goes last: the
   * vote that settles the dispute must not hinge on it.
   */
  private voteOrder(base: number, exclude: string | undefined): { order: Member[]; want: number } {
    const book = this.c.reputation
    const all = askOrder(this.members, this.c.tolerances, book)
    const last = all.filter((m) => m.peerId === exclude)
    const rest = all.filter((m) => m.peerId !== exclude)
    const head = rest[0]
    const suspect = (m: Member) =>
      head !== undefined && book.isSuspect(m.peerId) && this.c.tolerances.homogeneous(m.cls, head.cls)
    const clean = rest.filter((m) => !suspect(m))
    const suspects = rest.filter(suspect)
    const order = [...clean.slice(0, base), ...suspects, ...clean.slice(base), ...last]
    // Suspects come on top of the vote's usual size: probation must not cost an honest seat.
    return { order, want: Math.min(this.vote.maxReplicas, base) + suspects.length }
  }

  /** The vote on a disputed position says who was wrong, when the position's input came back the same. */
  private settle(st: GenerationState, d: Dispute, input: StageStepInput, accepted: StageStepOutput): void {
    if (!sameInput(d, input, this.init.hiddenSize)) {
      st.noLead.add(d.leader)
      return
    }
    for (const { peerId, agrees } of settleDispute(d, accepted, this.vote.tokenOf, this.init.hiddenSize)) {
      if (agrees) this.c.reputation.record(peerId, 'agree')
      else {
        this.c.reputation.recordProven(peerId)
        st.noLead.add(peerId)
      }
    }
    retireFlagged(
      this.c.reputation,
      this.members.map((m) => ({ m })),
    )
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
