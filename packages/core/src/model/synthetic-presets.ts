import type { LayerAttention } from './architecture.js'
import type { ModelConfig } from './model-config.js'

/**
 * Synthetic model shapes. The small ones are for tests; the named ones are real checkpoints'
 * published shapes (random weights), for memory, placement and throughput figures.
 */

/** Gemma 3's layer pattern: every `period`-th layer is global, the rest slide. */
function slidingPattern(layers: number, period: number): LayerAttention[] {
  return Array.from({ length: layers }, (_, i) => ((i + 1) % period === 0 ? 'full' : 'sliding'))
}

const base = {
  ropeTheta: 10000,
  rmsNormEps: 1e-5,
  bosTokenId: 1,
  eosTokenId: 2,
} as const

export const SYNTHETIC_PRESETS = {
  /** 198,400 params (~0.8 MB fp32). */
  tiny: {
    ...base,
    architecture: 'llama',
    vocabSize: 259,
    hiddenSize: 64,
    numLayers: 4,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 16,
    intermediateSize: 172,
    maxContext: 512,
    tieWordEmbeddings: true,
    attentionBias: false,
  },
  /** 543,104 params (~2.2 MB fp32): odd layer count, untied LM head, q/k/v biases (qwen2). */
  small: {
    ...base,
    architecture: 'qwen2',
    vocabSize: 259,
    hiddenSize: 96,
    numLayers: 5,
    numHeads: 6,
    numKvHeads: 2,
    headDim: 16,
    intermediateSize: 256,
    maxContext: 512,
    tieWordEmbeddings: false,
    attentionBias: true,
  },
  /** 10,409,280 params. */
  '10m': {
    ...base,
    architecture: 'llama',
    vocabSize: 4096,
    hiddenSize: 320,
    numLayers: 8,
    numHeads: 10,
    numKvHeads: 5,
    headDim: 32,
    intermediateSize: 864,
    maxContext: 1024,
    tieWordEmbeddings: true,
    attentionBias: false,
  },
  /** 100,092,672 params. */
  '100m': {
    ...base,
    architecture: 'llama',
    vocabSize: 32000,
    hiddenSize: 768,
    numLayers: 12,
    numHeads: 12,
    numKvHeads: 4,
    headDim: 64,
    intermediateSize: 2048,
    maxContext: 2048,
    tieWordEmbeddings: true,
    attentionBias: false,
  },
  /** 1,057,581,056 params (TinyLlama-1.1B's shape). */
  '1b': {
    ...base,
    architecture: 'llama',
    vocabSize: 32000,
    hiddenSize: 2048,
    numLayers: 22,
    numHeads: 32,
    numKvHeads: 8,
    headDim: 64,
    intermediateSize: 5632,
    maxContext: 2048,
    tieWordEmbeddings: true,
    attentionBias: false,
  },
  /** Llama 3.2 1B's published shape (meta-llama/Llama-3.2-1B config.json). */
  'llama-3.2-1b': {
    architecture: 'llama',
    vocabSize: 128256,
    hiddenSize: 2048,
    numLayers: 16,
    numHeads: 32,
    numKvHeads: 8,
    headDim: 64,
    intermediateSize: 8192,
    ropeTheta: 500000,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: true,
    maxContext: 131072,
    attentionBias: false,
    ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 8192 },
    bosTokenId: 128000,
    eosTokenId: 128001,
    eosTokenIds: [128001, 128008, 128009],
  },
  /** Qwen2.5 0.5B (Qwen/Qwen2.5-0.5B-Instruct). */
  'qwen2.5-0.5b': {
    architecture: 'qwen2',
    vocabSize: 151936,
    hiddenSize: 896,
    numLayers: 24,
    numHeads: 14,
    numKvHeads: 2,
    headDim: 64,
    intermediateSize: 4864,
    ropeTheta: 1000000,
    rmsNormEps: 1e-6,
    tieWordEmbeddings: true,
    maxContext: 32768,
    attentionBias: true,
    bosTokenId: 151643,
    eosTokenId: 151645,
    eosTokenIds: [151645, 151643],
  },
  /** Qwen3 0.6B (Qwen/Qwen3-0.6B): head_dim 128 with hidden 1024 and 16 heads. */
  'qwen3-0.6b': {
    architecture: 'qwen3',
    vocabSize: 151936,
    hiddenSize: 1024,
    numLayers: 28,
    numHeads: 16,
    numKvHeads: 8,
    headDim: 128,
    intermediateSize: 3072,
    ropeTheta: 1000000,
    rmsNormEps: 1e-6,
    tieWordEmbeddings: true,
    maxContext: 40960,
    attentionBias: false,
    bosTokenId: 151643,
    eosTokenId: 151645,
    eosTokenIds: [151645, 151643],
  },
  /**
   * Gemma 3 1B (google/gemma-3-1b-it): five sliding layers (window 512, local base 10000) per
   * global one. query_pre_attn_scalar is 256 = head_dim, so it stays implicit.
   */
  'gemma-3-1b': {
    architecture: 'gemma3',
    vocabSize: 262144,
    hiddenSize: 1152,
    numLayers: 26,
    numHeads: 4,
    numKvHeads: 1,
    headDim: 256,
    intermediateSize: 6912,
    ropeTheta: 1000000,
    localRopeTheta: 10000,
    rmsNormEps: 1e-6,
    tieWordEmbeddings: true,
    maxContext: 32768,
    attentionBias: false,
    slidingWindow: 512,
    layerTypes: slidingPattern(26, 6),
    bosTokenId: 2,
    eosTokenId: 1,
    eosTokenIds: [1, 106],
  },
} as const satisfies Record<string, ModelConfig>
