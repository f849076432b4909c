import { calibrationTokens, type InferenceBackend, referenceBoundaries } from '@butterfly/core'
import { createNodeBackend } from '@butterfly/node-platform'
import { FaultOptionsError } from './errors.js'
import { type FaultMode, type FaultPhase, FaultyStage } from './faulty-stage.js'

export interface FaultyBackendOptions {
  readonly mode: FaultMode
  /** Faults start at this step of each generation (2: the join-time calibration step passes). */
  readonly fromStep?: number
  /** Honest for the first N steps served in total (calibration included): honest until trusted. */
  readonly honestSteps?: number
  /** Lies on each eligible step with this probability (seeded). */
  readonly lieRate?: number
  /** Lies only on this phase's steps ('calibration': the join-time known input). */
  readonly phase?: FaultPhase
  readonly seed?: number
  readonly noise?: number
  readonly delayMs?: number
}

const MODES: readonly FaultMode[] = [
  'honest',
  'noise',
  'collude',
  'zero',
  'stale',
  'other-layer',
  'late',
  'silent',
  'gone',
]
const PHASES: readonly FaultPhase[] = ['prefill', 'decode', 'calibration', 'all']
const NUMBERS = ['fromStep', 'honestSteps', 'lieRate', 'seed', 'noise', 'delayMs'] as const

/** Validates fault options from outside (the faulty worker's JSON argument); at most 4 KiB. */
export function parseFaultOptions(json: string): FaultyBackendOptions {
  if (typeof json !== 'string' || json.length > 4096)
    throw new FaultOptionsError('fault options: at most 4 KiB of JSON')
  let x: unknown
  try {
    x = JSON.parse(json)
  } catch {
    throw new FaultOptionsError('fault options: not JSON')
  }
  if (typeof x !== 'object' || x === null || Array.isArray(x))
    throw new FaultOptionsError('fault options: not an object')
  const o = x as Record<string, unknown>
  for (const key of Object.keys(o)) {
    if (!['mode', 'phase', ...NUMBERS].includes(key))
      throw new FaultOptionsError(`fault options: unknown ${key}`)
  }
  if (!MODES.includes(o.mode as FaultMode))
    throw new FaultOptionsError(`fault options: bad mode ${String(o.mode)}`)
  if (o.phase !== undefined && !PHASES.includes(o.phase as FaultPhase))
    throw new FaultOptionsError(`fault options: bad phase ${String(o.phase)}`)
  for (const key of NUMBERS) {
    const v = o[key]
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 0))
      throw new FaultOptionsError(`fault options: ${key} must be a finite number >= 0`)
  }
  if (typeof o.lieRate === 'number' && o.lieRate > 1)
    throw new FaultOptionsError('fault options: lieRate over 1')
  return o as unknown as FaultyBackendOptions
}

/**
 * Test-only: a real onnxruntime-node backend whose stages misbehave (FaultyStage). The first
 * stage it creates is the join benchmark's and is left honest: faulting it would only stall the
 * join. 'other-layer' gets a real stage over another range of the same kind (first or last); a
 * middle stage passes its input through instead. Phase 'calibration' recognises the known input
 * by content: the first stage by calibrationTokens(config), later ones by the float64 boundary
 * state (computed here from the same weights, once per stage).
 */
export function faultyBackend(opts: FaultyBackendOptions): InferenceBackend {
  const real = createNodeBackend()
  let created = 0
  const patient = opts.honestSteps !== undefined || opts.lieRate !== undefined || opts.phase !== undefined
  return {
    name: `onnxruntime-node/cpu (${opts.mode})`,
    createStage: async (init, weights) => {
      const inner = await real.createStage(init, weights)
      if (created++ === 0) return inner
      const { layerStart: a, layerEnd: b, config } = init
      const n = config.numLayers
      const otherRange =
        a === 0 && b < n
          ? { layerEnd: b > 1 ? b - 1 : b + 1 }
          : a > 0 && b === n
            ? { layerStart: a + 1 < n ? a + 1 : a - 1 }
            : undefined
      const other =
        opts.mode === 'other-layer' && otherRange
          ? await real.createStage({ ...init, ...otherRange }, weights)
          : undefined
      const tokens = calibrationTokens(config)
      const calibration =
        opts.phase !== 'calibration'
          ? undefined
          : a === 0
            ? { tokens }
            : { hidden: (await referenceBoundaries(config, weights, tokens))[a] as Float32Array }
      return new FaultyStage(inner, {
        mode: opts.mode,
        // Old modes spare the join's calibration (steps 0-1); patient options count from the start.
        fromStep: opts.fromStep ?? (patient ? 0 : 2),
        seed: opts.seed ?? 1,
        noise: opts.noise ?? 0.5,
        delayMs: opts.delayMs ?? 6000,
        ...(opts.honestSteps !== undefined ? { honestSteps: opts.honestSteps } : {}),
        ...(opts.lieRate !== undefined ? { lieRate: opts.lieRate } : {}),
        ...(opts.phase !== undefined ? { phase: opts.phase } : {}),
        ...(other ? { other } : {}),
        ...(calibration ? { calibration } : {}),
      })
    },
  }
}
