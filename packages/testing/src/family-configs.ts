import type { ModelConfig } from '@butterfly/core'

/**
 * One small config per model family, with the traits that family brings switched on and
 * realistic ratios (GQA, head_dim != hidden / heads, rope scaling, windows shorter than the test
 * sequences). The engine suites run each through onnxruntime (Node, WASM, WebGPU) against the
 * float64 reference with synthetic weights.
 */
const common = {
  vocabSize: 259,
  hiddenSize: 64,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 16,
  intermediateSize: 96,
  rmsNormEps: 1e-6,
  maxContext: 128,
  attentionBias: false,
  bosTokenId: 1,
  eosTokenId: 2,
} as const

export const FAMILY_CONFIGS: Readonly<Record<string, ModelConfig>> = {
  // Llama 3.1+ frequency scaling (its published factors; 8192 cuts the low dims of head_dim 16).
  llama3: {
    ...common,
    architecture: 'llama',
    numLayers: 3,
    ropeTheta: 500000,
    tieWordEmbeddings: true,
    ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 8192 },
  },
  // Qwen3: q/k norms, head_dim 32 != hidden / heads, YaRN (factor 4) with its attention factor.
  qwen3: {
    ...common,
    architecture: 'qwen3',
    numLayers: 3,
    headDim: 32,
    ropeTheta: 1e6,
    tieWordEmbeddings: false,
    ropeScaling: {
      type: 'yarn',
      factor: 4,
      originalContext: 32,
      betaFast: 32,
      betaSlow: 1,
      attentionFactor: 0.1 * Math.log(4) + 1,
      truncate: true,
    },
  },
  // Phi-4-mini style: fused qkv / gate_up, partial rotary 0.75, LongRoPE past its original context.
  phi3: {
    ...common,
    architecture: 'phi3',
    numLayers: 2,
    ropeTheta: 10000,
    tieWordEmbeddings: false,
    rotaryDim: 12,
    slidingWindow: 127,
    ropeScaling: {
      type: 'longrope',
      shortFactor: [1, 1.1, 1.3, 1.6, 2, 2.5],
      longFactor: [1, 1.5, 2.5, 4, 6, 9],
      originalContext: 64,
      attentionFactor: Math.sqrt(1 + Math.log(2) / Math.log(64)),
    },
  },
  // Gemma 3: 1+w norms, sandwich norms, GeGLU, scaled embeddings, q/k norms, one kv head,
  // head_dim 32, sliding layers (window 8, well inside the sequence) with their own RoPE base
  // around a global layer, and a query_pre_attn_scalar that is not head_dim.
  gemma3: {
    ...common,
    architecture: 'gemma3',
    numLayers: 4,
    numKvHeads: 1,
    headDim: 32,
    ropeTheta: 1e6,
    localRopeTheta: 10000,
    tieWordEmbeddings: true,
    slidingWindow: 8,
    layerTypes: ['sliding', 'sliding', 'full', 'sliding'],
    queryPreAttnScalar: 24,
  },
  // Mistral v0.1: every layer slides, window 6 inside the sequence.
  mistral: {
    ...common,
    architecture: 'mistral',
    numLayers: 2,
    ropeTheta: 10000,
    tieWordEmbeddings: false,
    slidingWindow: 6,
  },
}
