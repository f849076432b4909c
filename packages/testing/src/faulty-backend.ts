import type { InferenceBackend } from '@butterfly/core'
import { createNodeBackend } from '@butterfly/node-platform'
import { type FaultMode, FaultyStage } from './faulty-stage.js'

export interface FaultyBackendOptions {
  readonly mode: FaultMode
  /** Faults start at this step of each generation (2: the join-time calibration step passes). */
  readonly fromStep?: number
  readonly seed?: number
  readonly noise?: number
  readonly delayMs?: number
}

/**
 * Test-only: a real onnxruntime-node backend whose stages misbehave (FaultyStage). The first
 * stage it creates is the join benchmark's and is left honest: faulting it would only stall the
 * join. 'other-layer' gets a real stage over another range of the same kind (first or last); a
 * middle stage passes its input through instead.
 */
export function faultyBackend(opts: FaultyBackendOptions): InferenceBackend {
  const real = createNodeBackend()
  let created = 0
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
      return new FaultyStage(inner, {
        mode: opts.mode,
        fromStep: opts.fromStep ?? 2,
        seed: opts.seed ?? 1,
        noise: opts.noise ?? 0.5,
        delayMs: opts.delayMs ?? 6000,
        ...(other ? { other } : {}),
      })
    },
  }
}
