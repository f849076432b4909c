import {
  calibrationTokens,
  numericClassOf,
  ReplicatedStage,
  type ReputationBook,
  referenceBoundaries,
  type StageSession,
  ToleranceTable,
  Xoshiro128ss,
} from '@butterfly/core'
import { loadModel } from '@butterfly/node-platform'
import type { Mesh } from '../control/mesh.js'
import { StageCalibrator } from './stage-calibrator.js'

export interface ReplicatedStageShape {
  /** Pipeline stage index, named in errors. */
  readonly index: number
  readonly layerStart: number
  readonly layerEnd: number
  readonly isFirst: boolean
  readonly isLast: boolean
}

export interface ReplicatedStageComponents {
  readonly mesh: Mesh
  readonly calibrator: StageCalibrator
  readonly reputation: ReputationBook
  readonly verification: 'windowed' | 'every-step'
  readonly window: number
}

/**
 * A stage held by several peers: the coordinator votes among 2f+1 of them, the rest are spares.
 * Each peer's numeric class comes from its join (backend/precision); tolerances come from
 * join-time calibration against the exact answer. The last stage votes on tokens, which need none.
 */
export async function replicatedStage(
  shape: ReplicatedStageShape,
  c: ReplicatedStageComponents,
  peers: ReadonlyArray<{ peerId: string; session: StageSession }>,
): Promise<StageSession> {
  const { index, ...layers } = shape
  const workers = new Map(c.mesh.workers().map((w) => [w.id, w]))
  const all = peers.map((p) => {
    const w = workers.get(p.peerId)
    return { ...p, cls: numericClassOf({ backend: w?.backend ?? 'cpu', precision: w?.precision ?? 'fp32' }) }
  })
  let replicas = all
  let tolerances = ToleranceTable.uniform([...new Set(all.map((r) => r.cls))], {
    relative: 1e-4,
    indexOverlap: 0.75,
  })
  if (!shape.isLast) {
    const cal = await c.calibrator.calibrate(
      { start: shape.layerStart, end: shape.layerEnd, isFirst: shape.isFirst },
      all,
    )
    replicas = all.filter((r) => cal.calibrated.some((x) => x.peerId === r.peerId))
    tolerances = cal.table
    if (replicas.length === 0) throw new Error(`stage ${index}: no replica passed calibration`)
  }
  // f follows the plan, not the survivors: replicas refused by calibration lower the margin,
  // never the quorum a step needs.
  const f = Math.floor((all.length - 1) / 2)
  const active = replicas.slice(0, 2 * f + 1)
  return new ReplicatedStage(
    {
      ...layers,
      hiddenSize: c.mesh.config.hiddenSize,
      f,
      // Escalation can ask every survivor; the quorum (f + 1) still follows the plan.
      maxReplicas: Math.max(2 * f + 1, replicas.length),
      stage: index,
      verification: c.verification,
      window: c.window,
    },
    {
      replicas: active,
      spares: replicas.slice(active.length),
      tolerances,
      reputation: c.reputation,
      rng: seededRandom(index + 1),
    },
  )
}

/**
 * The mesh's calibrator: the exact answers to the known input (every layer boundary, and the
 * logits of every position) are computed on first need from the files this server serves, then
 * kept.
 */
export function meshCalibrator(
  mesh: Mesh,
  reputation: ReputationBook,
  log: ((line: string) => void) | undefined,
): StageCalibrator {
  const tokens = calibrationTokens(mesh.config)
  let boundaries: Promise<Float32Array[]> | undefined
  const exact = () => {
    boundaries ??= exactBoundaries(mesh.model.dir, tokens)
    return boundaries
  }
  return new StageCalibrator({
    boundaries: exact,
    tokens,
    hiddenSize: mesh.config.hiddenSize,
    reputation,
    ...(log ? { log } : {}),
  })
}

/** The calibration input's exact states at every layer boundary, from the model files. */
export async function exactBoundaries(dir: string, tokens: readonly number[]): Promise<Float32Array[]> {
  const model = await loadModel(dir)
  try {
    return await referenceBoundaries(model.config, model.weights, tokens)
  } finally {
    await model.close()
  }
}

/** Seeded uniform [0, 1) draws for picking a stage's leader among equals, reproducible per stage. */
function seededRandom(seed: number): () => number {
  const rng = new Xoshiro128ss(seed)
  return () => rng.nextFloat64()
}
