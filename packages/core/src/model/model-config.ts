import type { Architecture, LayerAttention } from './architecture.js'
import type { RopeScaling } from './rope-scaling.js'

export type { Architecture, LayerAttention, RopeScaling }

export interface ModelConfig {
  readonly architecture: Architecture
  readonly hiddenSize: number
  readonly numLayers: number
  readonly numHeads: number
  readonly numKvHeads: number
  readonly headDim: number
  readonly intermediateSize: number
  readonly vocabSize: number
  readonly ropeTheta: number
  readonly rmsNormEps: number
  readonly tieWordEmbeddings: boolean
  readonly maxContext: number
  /** q/k/v projections carry biases (qwen2). */
  readonly attentionBias: boolean
  readonly bosTokenId: number | undefined
  readonly eosTokenId: number | undefined
  /** Absent for float weights; present when the linear projections are stored as int4. */
  readonly quantization?: WeightQuantization
  /** Every end-of-sequence id when config.json lists several (Llama 3 instruct); eosTokenId is the first. */
  readonly eosTokenIds?: readonly number[]
  /** Frequency scaling of the full-attention layers' RoPE; absent is plain RoPE. */
  readonly ropeScaling?: RopeScaling
  /** Leading dimensions of each head that rotate (partial_rotary_factor x head_dim); absent is headDim. */
  readonly rotaryDim?: number
  /** Keys a sliding-window layer attends to, itself included; absent means no sliding layers. */
  readonly slidingWindow?: number
  /**
   * Attention of each layer. Absent with slidingWindow set: every layer slides (Mistral, Phi-3);
   * absent without it: every layer is full.
   */
  readonly layerTypes?: readonly LayerAttention[]
  /** RoPE base of the sliding layers, unscaled (Gemma 3's rope_local_base_freq); absent is ropeTheta. */
  readonly localRopeTheta?: number
  /** Scores are scaled by 1/sqrt(this) (Gemma's query_pre_attn_scalar); absent is headDim. */
  readonly queryPreAttnScalar?: number
}

/** The attention layer `layer` does under `config`. */
export function layerAttention(config: ModelConfig, layer: number): LayerAttention {
  if (config.slidingWindow === undefined) return 'full'
  return config.layerTypes?.[layer] ?? 'sliding'
}

/** Dimensions of each head that RoPE rotates. */
export function rotaryDimOf(config: ModelConfig): number {
  return config.rotaryDim ?? config.headDim
}

/** The softmax scale of attention scores. */
export function attentionScaleOf(config: ModelConfig): number {
  return 1 / Math.sqrt(config.queryPreAttnScalar ?? config.headDim)
}

/** Every token id that ends generation under this config. */
export function eosTokenIdsOf(config: ModelConfig): readonly number[] {
  return config.eosTokenIds ?? (config.eosTokenId === undefined ? [] : [config.eosTokenId])
}

/**
 * int4 linear weights (see quant/int4.ts): every q/k/v/o/gate/up/down projection is stored as
 * `X.weight.qweight` + `X.weight.scales` instead of `X.weight`, and run with MatMulNBits. In
 * config.json it is `quantization_config: {quant_method: "butterfly_int4", bits: 4,
 * block_size: 32, symmetric: true, lm_head: false}`.
 */
export interface WeightQuantization {
  readonly method: 'int4'
  readonly bits: 4
  /** Weights per scale along the input dimension; a power of two from 16 to 256. */
  readonly blockSize: number
  /** The untied LM head is int4 too (a tied head is the embedding table and stays float). */
  readonly lmHead: boolean
}

/** quant_method we write and accept in config.json. */
export const INT4_QUANT_METHOD = 'butterfly_int4'
export const QUANT_BLOCK_SIZES: readonly number[] = [16, 32, 64, 128, 256]

/** A value as config.json would spell it, for error messages. */
export function describeConfigValue(value: unknown): string {
  if (value === undefined) return 'nothing'
  if (typeof value === 'number') return String(value)
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
