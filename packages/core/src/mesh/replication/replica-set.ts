import { concatFloats as concat } from '../../base/concat-floats.js'
import type { StageSession, StageStepInput, StageStepOutput } from '../../engine/inference-backend.js'
import type { StageShape } from '../../engine/stage-shape.js'
import { StageError, VerifyError } from '../../errors.js'
import type { ReputationBook } from '../../verify/reputation.js'
import { isNumericClass, type NumericClass, type ToleranceTable } from '../../verify/tolerance.js'
import { inputsBetween, type StepRecord } from './step-history.js'

export interface Replica {
  readonly peerId: string
  readonly cls: NumericClass
  readonly session: StageSession
}

/** 'spare': never asked yet; 'flagged': excluded by the reputation book; 'failed': threw or timed out. */
export type ReplicaState = 'active' | 'spare' | 'flagged' | 'failed'

export interface ReplicaStatus {
  readonly peerId: string
  readonly cls: NumericClass
  state: ReplicaState
}

export interface Member extends ReplicaStatus {
  readonly session: StageSession
  /** Per generation: how many positions this replica has in its KV cache. */
  readonly synced: Map<string, number>
  /** Per generation: the tail of the calls made to it, so two never interleave their steps. */
  readonly busy: Map<string, Promise<unknown>>
}

const MAX_PEER_ID_LENGTH = 256

export function toMembers(
  replicas: readonly Replica[],
  spares: readonly Replica[],
  shape: StageShape,
): Member[] {
  if (!Array.isArray(replicas) || replicas.length === 0) {
    throw new VerifyError('ERR_VERIFY_INPUT', 'a replicated stage needs at least one replica')
  }
  if (!Array.isArray(spares)) throw new VerifyError('ERR_VERIFY_INPUT', 'spares must be an array')
  const seen = new Set<string>()
  const members: Member[] = []
  for (const [list, state] of [
    [replicas, 'active'],
    [spares, 'spare'],
  ] as const) {
    for (const r of list) {
      const { peerId, cls, session } = r ?? ({} as Replica)
      if (!(typeof peerId === 'string' && peerId.length > 0 && peerId.length <= MAX_PEER_ID_LENGTH)) {
        throw new VerifyError(
          'ERR_VERIFY_INPUT',
          `replica peerId must be a string of 1..${MAX_PEER_ID_LENGTH}`,
        )
      }
      if (seen.has(peerId)) throw new VerifyError('ERR_VERIFY_INPUT', `peer ${peerId} is listed twice`)
      seen.add(peerId)
      if (!isNumericClass(cls)) throw new VerifyError('ERR_VERIFY_INPUT', `peer ${peerId}: bad numeric class`)
      if (
        typeof session?.step !== 'function' ||
        session.layerStart !== shape.layerStart ||
        session.layerEnd !== shape.layerEnd ||
        session.isFirst !== shape.isFirst ||
        session.isLast !== shape.isLast
      ) {
        throw new VerifyError('ERR_VERIFY_INPUT', `peer ${peerId} does not serve this stage's layers`)
      }
      members.push({ peerId, cls, session, state, synced: new Map(), busy: new Map() })
    }
  }
  return members
}

/**
 * The usable replicas (not flagged, not failed, of a calibrated class) in the order to ask them:
 * first the largest homogeneous class group (BOINC homogeneous redundancy: only replicas whose
 * honest outputs are provably close vote together), its active members before its spares, then
 * everyone else as a last resort for escalation. Ties go to the group of the first active replica.
 * Within a group, peers with the longer clean record come first (the first asked ships the full
 * state), so a new peer never leads while a proven one is there; what a peer claims about itself
 * (memory, speed: the plan's order) only breaks ties.
 */
export function askOrder(
  members: readonly Member[],
  tolerances: ToleranceTable,
  book: ReputationBook,
): Member[] {
  for (const m of members) {
    if ((m.state === 'active' || m.state === 'spare') && book.isFlagged(m.peerId)) m.state = 'flagged'
  }
  const usable = members.filter((m) => (m.state === 'active' || m.state === 'spare') && tolerances.has(m.cls))
  const byState = (list: Member[]) => [
    ...list.filter((m) => m.state === 'active'),
    ...list.filter((m) => m.state === 'spare'),
  ]
  const ordered = byState(usable)
  const groups = tolerances.homogeneousGroups(ordered.map((m) => m.cls))
  let best: Member[] = []
  for (const g of groups) {
    const inGroup = ordered.filter((m) => g.includes(m.cls))
    if (inGroup.length > best.length) best = inGroup
  }
  const record = (m: Member) => (m.state === 'active' ? 1 : 0) * 2 ** 40 + (book.get(m.peerId)?.streak ?? 0)
  const ranked = best
    .map((m, i) => ({ m, i, r: record(m) }))
    .sort((a, b) => b.r - a.r || a.i - b.i)
    .map((x) => x.m)
  return [...ranked, ...ordered.filter((m) => !best.includes(m))]
}

/** The step, raced against `timeoutMs` (when given): a late answer is a StageError ERR_STEP_TIMEOUT. */
export function stepWithTimeout(
  m: Member,
  generationId: string,
  input: StageStepInput,
  timeoutMs: number | undefined,
  signal?: AbortSignal,
): Promise<StageStepOutput> {
  return withTimeout(m.peerId, m.session.step(generationId, input, signal), timeoutMs)
}

/** The replica's kept full state for a step it answered with a fingerprint, under `timeoutMs`. */
export function fetchWithTimeout(
  m: Member,
  generationId: string,
  startPos: number,
  timeoutMs: number | undefined,
  signal?: AbortSignal,
): Promise<Float32Array> {
  const fetch = m.session.fetchHidden
  if (fetch === undefined) {
    return Promise.reject(new StageError('ERR_HIDDEN_UNAVAILABLE', `peer ${m.peerId} keeps no states`))
  }
  return withTimeout(m.peerId, fetch.call(m.session, generationId, startPos, signal), timeoutMs)
}

function withTimeout<T>(peerId: string, run: Promise<T>, timeoutMs: number | undefined): Promise<T> {
  if (timeoutMs === undefined) return run
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new StageError('ERR_STEP_TIMEOUT', `peer ${peerId} did not answer in ${timeoutMs} ms`)),
      timeoutMs,
    )
  })
  run.catch(() => undefined) // a replica that fails after its timeout must not surface unhandled
  return Promise.race([run, late]).finally(() => clearTimeout(timer))
}

/** Most positions one catch-up request carries. */
export const MAX_REPLAY_POSITIONS = 512

/**
 * Consecutive steps merged into chunks of at most `maxPositions` positions (a step longer than
 * that stays whole), each with the number of steps it covers. One chunk computes the same KV rows
 * as its steps one by one (the stage graph serves prefill and decode alike) in one pass over the
 * weights, so a replica that fell behind catches up for about the cost of one step, not k.
 */
export function mergeSteps(
  steps: readonly StageStepInput[],
  maxPositions = MAX_REPLAY_POSITIONS,
): Array<{ input: StageStepInput; steps: number }> {
  const chunks: Array<{ parts: StageStepInput[]; positions: number }> = []
  for (const s of steps) {
    const last = chunks[chunks.length - 1]
    const sameKind = last !== undefined && (last.parts[0]?.tokens !== undefined) === (s.tokens !== undefined)
    if (last !== undefined && sameKind && last.positions + s.seqLen <= maxPositions) {
      last.parts.push(s)
      last.positions += s.seqLen
    } else chunks.push({ parts: [s], positions: s.seqLen })
  }
  return chunks.map(({ parts, positions }) => {
    const first = parts[0] as StageStepInput
    if (parts.length === 1) return { input: first, steps: 1 }
    const tail = parts[parts.length - 1] as StageStepInput
    const input: StageStepInput =
      first.tokens !== undefined
        ? { tokens: parts.flatMap((p) => p.tokens ?? []), seqLen: positions, startPos: first.startPos }
        : {
            hidden: concat(parts.map((p) => p.hidden as Float32Array)),
            seqLen: positions,
            startPos: first.startPos,
          }
    return {
      input: tail.temperature === undefined ? input : { ...input, temperature: tail.temperature },
      steps: parts.length,
    }
  })
}

/**
 * Runs `fn` once every earlier call made to this replica for the generation has settled: a window
 * check and a vote may both want the same replica, and its steps must arrive in order.
 */
export function exclusive<T>(m: Member, generationId: string, fn: () => Promise<T>): Promise<T> {
  const before = m.busy.get(generationId) ?? Promise.resolve()
  const run = before.then(fn, fn)
  const tail = run.catch(() => undefined)
  m.busy.set(generationId, tail)
  void tail.then(() => {
    if (m.busy.get(generationId) === tail) m.busy.delete(generationId)
  })
  return run
}

/**
 * Brings the replica's KV cache for the generation up to position `to` (Petals-style: replay the
 * accepted inputs in order, merged into chunks, outputs discarded). A replica that is ahead (it
 * checked a window that was then rolled back) is truncated first.
 */
export async function syncTo(
  m: Member,
  generationId: string,
  steps: readonly StepRecord<Member>[],
  to: number,
  timeoutMs: number | undefined,
  signal?: AbortSignal,
): Promise<number> {
  let synced = m.synced.get(generationId) ?? 0
  if (synced > to) {
    await truncateMember(m, generationId, to, signal)
    synced = to
  }
  // Replayed outputs are discarded, so a replica that can answer with a fingerprint does.
  const brief = !m.session.isLast && typeof m.session.fetchHidden === 'function'
  const past = inputsBetween(steps, synced, to)
  for (const chunk of mergeSteps(past)) {
    const input = chunk.input
    await stepWithTimeout(
      m,
      generationId,
      brief ? { ...input, fingerprint: { challenge: 0 } } : input,
      timeoutMs,
      signal,
    )
    m.synced.set(generationId, input.startPos + input.seqLen)
  }
  return past.length
}

/** Catches the replica up to the step, then runs it. */
export function syncAndStep(
  m: Member,
  generationId: string,
  steps: readonly StepRecord<Member>[],
  input: StageStepInput,
  timeoutMs: number | undefined,
  signal?: AbortSignal,
): Promise<{ out: StageStepOutput; replayed: number }> {
  return exclusive(m, generationId, async () => {
    const replayed = await syncTo(m, generationId, steps, input.startPos, timeoutMs, signal)
    const out = await stepWithTimeout(m, generationId, input, timeoutMs, signal)
    m.synced.set(generationId, input.startPos + input.seqLen)
    return { out, replayed }
  })
}

/** Rolls one replica back to `length` positions of the generation (when it holds more). */
export async function truncateMember(
  m: Member,
  generationId: string,
  length: number,
  signal?: AbortSignal,
): Promise<void> {
  const synced = m.synced.get(generationId) ?? 0
  if (synced <= length) return
  if (typeof m.session.truncate !== 'function') {
    // A replica that cannot roll back starts the generation again from scratch.
    m.session.endGeneration(generationId)
    m.synced.delete(generationId)
    return
  }
  await m.session.truncate(generationId, length, signal)
  m.synced.set(generationId, length)
}

/** Takes a replica out of service and frees whatever generations it holds (best effort). */
export function retire(m: Member, state: 'flagged' | 'failed'): void {
  m.state = state
  for (const id of m.synced.keys()) {
    try {
      m.session.endGeneration(id)
    } catch {
      // a replica that is gone cannot free anything
    }
  }
  m.synced.clear()
  m.busy.clear()
}
