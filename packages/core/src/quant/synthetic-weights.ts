import { ModelFileError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import { syntheticTensor } from '../model/synthetic.js'
import { expectedWeightShapes } from '../model/weight-names.js'
import { fromFloat32 } from '../weights/float16.js'
import type { RawTensor } from '../weights/tensor.js'
import type { WeightProvider } from '../weights/weight-provider.js'
import {
  encodeLinearWeight,
  INT4_QWEIGHT_SUFFIX,
  INT4_SCALES_SUFFIX,
  isInt4Weight,
} from './weight-encoding.js'

/**
 * A synthetic model's tensors as a file of that config would store them: float tensors in
 * `floatDtype`, and under an int4 config the qweight and scales entries of each projection,
 * quantised from the same seeded values. What `synthetic:NAME:int4` writes to disk, served from
 * memory (the join benchmark and tests use it). The last quantised weight is kept, so asking
 * for its qweight and then its scales quantises once.
 */
export function syntheticStoredWeights(
  config: ModelConfig,
  floatDtype: 'F32' | 'F16' = 'F32',
  seed = 0,
): WeightProvider {
  const shapes = expectedWeightShapes(config)
  let last: { name: string; entries: RawTensor[] } | undefined
  return async (stored) => {
    for (const [suffix, index] of [
      [INT4_QWEIGHT_SUFFIX, 0],
      [INT4_SCALES_SUFFIX, 1],
    ] as const) {
      if (!stored.endsWith(suffix)) continue
      const name = stored.slice(0, -suffix.length)
      const shape = shapes.get(name)
      if (shape !== undefined && isInt4Weight(config, name)) {
        if (last?.name !== name) {
          const data = syntheticTensor(config, name, seed)
          const blockSize = config.quantization?.blockSize
          last = { name, entries: encodeLinearWeight(name, data, shape, 'int4', blockSize) }
        }
        return last.entries[index] as RawTensor
      }
    }
    const shape = shapes.get(stored)
    if (shape === undefined || isInt4Weight(config, stored)) {
      throw new ModelFileError('ERR_MODEL_TENSOR_MISSING', 'synthetic', 'not stored under this config', {
        tensor: stored,
      })
    }
    return { dtype: floatDtype, shape, data: fromFloat32(syntheticTensor(config, stored, seed), floatDtype) }
  }
}
