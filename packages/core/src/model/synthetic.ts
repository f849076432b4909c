import { ModelConfigError, ModelFileError } from '../errors.js'
import { elementCount } from '../weights/tensor.js'
import { architectureTraits } from './architecture.js'
import type { ModelConfig } from './model-config.js'
import { SYNTHETIC_PRESETS } from './synthetic-presets.js'
import { EMBED_TOKENS, expectedWeightShapes, FINAL_NORM, LM_HEAD } from './weight-names.js'

/**
 * Seeded synthetic Llama models: real shapes, random weights, no downloads. Every tensor is a
 * pure function of (config, seed, name), so any peer can regenerate just the tensors of its own
 * layers and still agree bit-for-bit with every other peer.
 */

export { SYNTHETIC_PRESETS }

export type SyntheticPresetName = keyof typeof SYNTHETIC_PRESETS

export const SYNTHETIC_PRESET_NAMES = Object.keys(SYNTHETIC_PRESETS) as SyntheticPresetName[]

export function isSyntheticPresetName(name: string): name is SyntheticPresetName {
  return Object.hasOwn(SYNTHETIC_PRESETS, name)
}

export function syntheticConfig(name: string): ModelConfig {
  if (typeof name !== 'string' || !isSyntheticPresetName(name)) {
    throw new ModelConfigError(
      `unknown synthetic model ${JSON.stringify(name)}; valid names: ${SYNTHETIC_PRESET_NAMES.join(', ')}`,
    )
  }
  return { ...SYNTHETIC_PRESETS[name] }
}

/** Every tensor the model needs: embeddings, layers in order, final norm, then LM head if untied. */
export function syntheticTensorSpecs(config: ModelConfig): Array<{ name: string; shape: readonly number[] }> {
  return [...expectedWeightShapes(config)].map(([name, shape]) => ({ name, shape }))
}

/** Total number of weights the config implies (any Llama-family config, not just presets). */
export function parameterCount(config: ModelConfig): number {
  let n = 0
  for (const shape of expectedWeightShapes(config).values()) n += elementCount(shape)
  return n
}

/** FNV-1a over the UTF-8 bytes of `s`. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5
  for (const byte of new TextEncoder().encode(s)) h = Math.imul(h ^ byte, 0x01000193)
  return h >>> 0
}

/** MurmurHash3's 32-bit finalizer: a bijective avalanche mix. */
function fmix32(x: number): number {
  let z = x | 0
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
  return (z ^ (z >>> 16)) >>> 0
}

/**
 * Mean and standard deviation of each tensor. Goals: activations stay O(1) at any depth, logits
 * have std ~4 so greedy decoding has clear top-1 margins (ties would make runs on backends with
 * different rounding diverge), and greedy output is not a single repeated token.
 *
 * Tied embeddings need care: the final hidden state still contains the input token's own
 * embedding e, which adds |e|^2 to that token's logit and makes an untrained model echo its input
 * forever. So tied models get small embeddings (RMS 0.5/sqrt(H)), residual branches 8x louder, and
 * a final-norm gain of 8 that brings the logit std back to ~4.
 *
 * The other families keep those effective scales: Gemma's embeddings are multiplied by sqrt(H)
 * on the way in, so they are drawn sqrt(H) smaller (and a tied head's final gain is sqrt(H)
 * larger); its norms multiply by (1 + w), so their stored mean is one less; its sandwich norms
 * set each branch's size regardless of o_proj/down_proj, so the post-norms carry the
 * 1/sqrt(2L) depth scaling instead. q/k norms have effective gain ~1.
 */
function tensorScale(
  config: ModelConfig,
  name: string,
  shape: readonly number[],
): { mean: number; std: number } {
  const fanIn = shape[shape.length - 1] as number
  const traits = architectureTraits(config.architecture)
  const tied = config.tieWordEmbeddings
  const rootH = Math.sqrt(config.hiddenSize)
  const embedShrink = traits.scaledEmbeddings ? rootH : 1
  const branchGain = (tied ? 8 : 1) / Math.sqrt(2 * config.numLayers)
  const norm = (gain: number, std: number) => ({ mean: gain - traits.normOffset, std })
  if (name === LM_HEAD) return { mean: 0, std: 4 / rootH }
  if (name === EMBED_TOKENS) return { mean: 0, std: (tied ? 0.5 : 4) / rootH / embedShrink }
  if (name === FINAL_NORM && tied) return norm(8 * embedShrink, 0.4)
  if (
    traits.sandwichNorms &&
    (name.endsWith('.post_attention_layernorm.weight') || name.endsWith('.post_feedforward_layernorm.weight'))
  ) {
    return norm(branchGain, 0.05 * branchGain)
  }
  if (name.endsWith('norm.weight')) return norm(1, 0.05)
  if (name.endsWith('.bias')) return { mean: 0, std: 0.1 }
  if (name.endsWith('o_proj.weight') || name.endsWith('down_proj.weight')) {
    // Each of the 2L branches adds to the residual stream; 1/sqrt(2L) keeps the sum depth-independent.
    return { mean: 0, std: (tied ? 8 : 1) / Math.sqrt(2 * config.numLayers * fanIn) }
  }
  return { mean: 0, std: 1 / Math.sqrt(fanIn) }
}

/**
 * One tensor of a synthetic model, row-major, as float32.
 *
 * Values are uniform with the scale from `tensorScale`, drawn from a splitmix32 stream seeded
 * with fmix32(fnv1a(name) ^ fmix32(seed + 0x9e3779b9)). Only 32-bit integer ops, +, *, / and
 * Math.sqrt (all exactly specified by IEEE 754) are used, so every JS engine produces the same bits.
 */
export function syntheticTensor(config: ModelConfig, name: string, seed = 0): Float32Array {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new ModelConfigError(`synthetic seed must be an integer in [0, 2^32), got ${seed}`)
  }
  const shape = expectedWeightShapes(config).get(name)
  if (shape === undefined) {
    throw new ModelFileError(
      'ERR_MODEL_TENSOR_MISSING',
      'synthetic',
      'this model config has no such tensor',
      {
        tensor: name,
      },
    )
  }
  const { mean, std } = tensorScale(config, name, shape)
  const halfWidth = std * Math.sqrt(3)
  let state = fmix32(fnv1a(name) ^ fmix32(seed + 0x9e3779b9))
  const out = new Float32Array(elementCount(shape))
  for (let i = 0; i < out.length; i++) {
    // splitmix32: a Weyl sequence through the same finalizer.
    state = (state + 0x9e3779b9) | 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
    const u = ((z ^ (z >>> 16)) >>> 0) / 4294967296
    out[i] = mean + halfWidth * (2 * u - 1)
  }
  return out
}

/** All tensors of a synthetic model. Only for small presets: this holds every weight in memory. */
export function syntheticWeights(config: ModelConfig, seed = 0): Map<string, Float32Array> {
  const weights = new Map<string, Float32Array>()
  for (const { name } of syntheticTensorSpecs(config)) weights.set(name, syntheticTensor(config, name, seed))
  return weights
}
