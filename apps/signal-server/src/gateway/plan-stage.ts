import {
  type HiddenDtype,
  type MessageConnection,
  type Pipeline,
  type PlanStage,
  RemoteStage,
  type ReputationBook,
  type StageSession,
  stagePeers,
} from '@butterfly/core'
import type { Mesh } from '../control/mesh.js'
import type { ServerMetrics } from '../control/server-metrics.js'
import { SlowClaimCheck } from './claim-check.js'
import { MeteredStage } from './metered-stage.js'
import { replicatedStage } from './replicated-stage-factory.js'
import type { StageCalibrator } from './stage-calibrator.js'

export interface PlanStageComponents {
  readonly mesh: Mesh
  readonly connection: (peerId: string) => Promise<MessageConnection>
  readonly calibrator: StageCalibrator
  readonly reputation: ReputationBook
  readonly claims: SlowClaimCheck
  readonly metrics?: ServerMetrics | undefined
  readonly stepTimeoutMs: number
  readonly verification: 'windowed' | 'every-step'
  readonly window: number
  /** How hidden states travel to and from every stage dialed (the mesh's --wire-dtype). */
  readonly hiddenDtype: HiddenDtype
  /** Called once when a chain's steps are slower than its peers' claims allow. */
  readonly onSlowChain?: () => void
}

/**
 * The coordinator's session for stage `i` of a plan: one signed RemoteStage for a lone peer, a
 * ReplicatedStage over its replicas otherwise, metered when the server keeps metrics.
 */
export async function planStage(
  c: PlanStageComponents,
  s: PlanStage,
  i: number,
  count: number,
): Promise<StageSession> {
  const { mesh } = c
  const shape = { layerStart: s.start, layerEnd: s.end, isFirst: i === 0, isLast: i === count - 1 }
  const remote = async (peerId: string) =>
    new RemoteStage(
      {
        peerId,
        ...shape,
        hiddenSize: mesh.config.hiddenSize,
        stepTimeoutMs: c.stepTimeoutMs,
        hiddenDtype: c.hiddenDtype,
        // Every result must carry the worker's signature over this very step.
        ...verifyWith(mesh.publicKey(peerId), mesh.name),
      },
      await c.connection(peerId),
    )
  const peers = stagePeers(s)
  const stage =
    peers.length === 1
      ? await remote(s.peerId)
      : await replicatedStage(
          { index: i, ...shape },
          {
            mesh,
            calibrator: c.calibrator,
            reputation: c.reputation,
            verification: c.verification,
            window: c.window,
          },
          await allOrDispose(
            peers.map(async (p) => ({ peerId: p, session: await remote(p) })),
            (r) => r.session,
          ),
        )
  // A replicated stage's time is its replicas' together: only a lone peer's is its own.
  const claimed = mesh.workers().find((w) => w.id === s.peerId)?.layerStepsPerSec ?? 0
  // Steps that overlapped were batched (or queued) together on the peer: the claim bounds the
  // time per step, so a step's time is shared among the steps in flight with it.
  const observe = (ms: number, tokens: number, overlapping: number) => {
    if (tokens === 1 && peers.length === 1) {
      c.claims.record(s.peerId, claimed, s.end - s.start, ms / Math.max(1, overlapping))
    }
  }
  return c.metrics
    ? new MeteredStage(stage, { mesh: mesh.name, stage: String(i), metrics: c.metrics, observe })
    : stage
}

export interface BuiltPipeline {
  readonly pipeline: Pipeline
  /** A chained plan's pipeline through the coordinator, built on first call. */
  readonly relayed?: () => Promise<Pipeline>
  /** That pipeline if it was asked for, so that whoever retires the plan retires it too. */
  readonly relayedIfBuilt?: () => Promise<Pipeline> | undefined
}

/**
 * A plan's pipeline: one chained session when `replyTo` (this coordinator's peer id) is given and
 * the plan has no replicas, with `relayed` to build the pipeline through the coordinator should a
 * worker-to-worker link fail; a session per stage otherwise.
 */
export async function planPipeline(
  c: PlanStageComponents,
  stages: readonly PlanStage[],
  maxContext: number,
  replyTo: string | undefined,
): Promise<BuiltPipeline> {
  const relay = async (): Promise<Pipeline> => ({
    stages: await allOrDispose(
      stages.map((s, i) => planStage(c, s, i, stages.length)),
      (stage) => stage,
    ),
    maxContext,
  })
  const chain = replyTo === undefined ? undefined : await chainStage(c, stages, replyTo)
  if (chain === undefined) return { pipeline: await relay() }
  let relayed: Promise<Pipeline> | undefined
  return {
    pipeline: { stages: [chain], maxContext },
    relayed: () => (relayed ??= relay()),
    relayedIfBuilt: () => relayed,
  }
}

/**
 * Every session, or none: when one fails to open, those that opened are disposed (each holds a
 * listener on a connection the dialer shares with later plans) before the failure is rethrown.
 */
export async function allOrDispose<T>(
  opening: ReadonlyArray<Promise<T>>,
  session: (opened: T) => StageSession,
): Promise<T[]> {
  const settled = await Promise.allSettled(opening)
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed === undefined) return settled.map((r) => (r as PromiseFulfilledResult<T>).value)
  await Promise.allSettled(
    settled.flatMap((r) => (r.status === 'fulfilled' ? [session(r.value).dispose()] : [])),
  )
  throw failed.reason
}

/**
 * The coordinator's one session for a whole r=1 plan: requests enter at stage 0's peer, hidden
 * states hop worker to worker, and the last peer's signed top-k comes back (K+1 messages per token
 * instead of 2K). Undefined when a stage has replicas: voting needs each replica's output here.
 */
export async function chainStage(
  c: PlanStageComponents,
  stages: readonly PlanStage[],
  replyTo: string,
): Promise<StageSession | undefined> {
  if (stages.length < 2 || stages.some((s) => stagePeers(s).length > 1)) return undefined
  const { mesh } = c
  const [first, ...rest] = stages as [PlanStage, ...PlanStage[]]
  const last = stages[stages.length - 1] as PlanStage
  const [entry, ...connections] = await Promise.all(stages.map((s) => c.connection(s.peerId)))
  const stage = new RemoteStage(
    {
      peerId: first.peerId,
      layerStart: first.start,
      layerEnd: last.end,
      isFirst: true,
      isLast: true,
      hiddenSize: mesh.config.hiddenSize,
      stepTimeoutMs: c.stepTimeoutMs,
      hiddenDtype: c.hiddenDtype,
      // The answers are the last peer's, signed by it over this very step.
      ...verifyWith(mesh.publicKey(last.peerId), mesh.name),
    },
    entry as MessageConnection,
    { route: rest.map((s) => s.peerId), replyTo, connections },
  )
  // The coordinator sees only the chain's time, not each peer's. The chain is judged against the
  // claims together (a layer-step rate whose time is the sum of the peers' claimed times, through
  // its own SlowClaimCheck, which excludes nobody); a chain found slow is relayed, where the
  // per-peer check finds who.
  const claimOf = (id: string) => mesh.workers().find((w) => w.id === id)?.layerStepsPerSec ?? 0
  const layers = last.end - first.start
  const seconds = stages.reduce((t, s) => t + (s.end - s.start) / claimOf(s.peerId), 0)
  const key = stages.map((s) => s.peerId).join('>')
  const chainClaims = new SlowClaimCheck({
    factor: c.claims.factor,
    minSteps: c.claims.minSteps,
    slackMs: c.claims.slackMs,
  })
  const observe = (ms: number, tokens: number, overlapping: number) => {
    if (tokens !== 1 || !(seconds > 0)) return
    if (chainClaims.record(key, layers / seconds, layers, ms / Math.max(1, overlapping))) c.onSlowChain?.()
  }
  return c.metrics
    ? new MeteredStage(stage, { mesh: mesh.name, stage: 'chain', metrics: c.metrics, observe })
    : stage
}

function verifyWith(
  key: Uint8Array | undefined,
  mesh: string,
): { verifyKey: Uint8Array; mesh: string } | object {
  return key === undefined ? {} : { verifyKey: key, mesh }
}
