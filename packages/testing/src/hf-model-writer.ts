/**
 * Test-only: a Hugging Face checkpoint directory (as file name -> bytes) for a ModelConfig and its
 * weights in HF layout, and the seeded weights themselves.
 */
import {
  encodeSafetensors,
  expectedWeightShapes,
  fromFloat32,
  type ModelConfig,
  modelConfigToJson,
  syntheticTensor,
} from '@butterfly/core'

/** Every tensor `config` needs, seeded (core's synthetic weights), float32 in HF layout. */
export function seededWeights(config: ModelConfig, seed: number): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>()
  for (const name of expectedWeightShapes(config).keys()) out.set(name, syntheticTensor(config, name, seed))
  return out
}

/** config.json (modelConfigToJson) and model.safetensors (F32) of the checkpoint. */
export function hfModelFiles(
  config: ModelConfig,
  weights: ReadonlyMap<string, Float32Array>,
): Map<string, Uint8Array> {
  const tensors = [...expectedWeightShapes(config)].map(([name, shape]) => {
    const w = weights.get(name)
    if (w === undefined) throw new Error(`test weights lack ${name}`)
    return { name, dtype: 'F32' as const, shape, data: fromFloat32(w, 'F32') }
  })
  return new Map([
    ['config.json', new TextEncoder().encode(`${JSON.stringify(modelConfigToJson(config), null, 2)}\n`)],
    ['model.safetensors', encodeSafetensors(tensors, { format: 'pt' })],
  ])
}
