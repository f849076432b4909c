import { VerifyError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import { ReferenceModel } from '../model/reference-model.js'
import { EMBED_TOKENS, layerWeightShapes } from '../model/weight-names.js'
import { readDequantized } from '../quant/weight-encoding.js'
import type { WeightProvider } from '../weights/weight-provider.js'

/**
 * The known input every replica computes when it joins a replicated stage, and its exact answer.
 * A coordinator that holds the model files (the server does) computes the answer in float64 with
 * the reference implementation, so calibration compares each class with the truth rather than
 * with other, untrusted, peers.
 */

/** Eight positions spread over the vocabulary: enough rows to see each class's worst row. */
export function calibrationTokens(config: ModelConfig): number[] {
  return Array.from({ length: 8 }, (_, i) => (1 + i * 7919) % config.vocabSize)
}

/**
 * Hidden states of `tokens` at every layer boundary: [0] the embeddings, [l] the output of layer
 * l - 1, so a stage [a, b) maps boundary a to boundary b (stage 0 starts from the tokens). Weights
 * are read one layer at a time, so memory stays at one layer's fp32 tensors whatever the model.
 */
export async function referenceBoundaries(
  config: ModelConfig,
  weights: WeightProvider,
  tokens: readonly number[],
  signal?: AbortSignal,
): Promise<Float32Array[]> {
  if (
    !Array.isArray(tokens) ||
    tokens.length === 0 ||
    !tokens.every((t) => Number.isInteger(t) && t >= 0 && t < config.vocabSize)
  ) {
    throw new VerifyError('ERR_VERIFY_INPUT', `calibration tokens must be ids below ${config.vocabSize}`)
  }
  const load = async (names: Array<[string, readonly number[]]>) => {
    const map = new Map<string, Float32Array>()
    // int4 weights come back dequantised: exactly the values MatMulNBits multiplies by.
    for (const [name, shape] of names) map.set(name, await readDequantized(config, weights, name, shape))
    return new ReferenceModel(config, map, (n) => map.has(n))
  }
  const embed = await load([[EMBED_TOKENS, [config.vocabSize, config.hiddenSize]]])
  const cache = embed.createCache()
  const out = [embed.embed(tokens)]
  for (let l = 0; l < config.numLayers; l++) {
    signal?.throwIfAborted()
    const layer = await load(layerWeightShapes(config, l))
    out.push(layer.runLayers(out[l] as Float32Array, tokens.length, 0, l, l + 1, cache))
  }
  return out
}
