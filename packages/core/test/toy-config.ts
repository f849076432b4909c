import type { ModelConfig } from '../src/model/model-config.js'

/** A 2-layer GQA Llama with biases and an untied head: small enough for float64 checks by hand. */
export const TOY_LLAMA: ModelConfig = {
  architecture: 'llama',
  hiddenSize: 32,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 8,
  intermediateSize: 48,
  vocabSize: 37,
  ropeTheta: 10000,
  rmsNormEps: 1e-5,
  tieWordEmbeddings: false,
  maxContext: 64,
  attentionBias: true,
  bosTokenId: 1,
  eosTokenId: 2,
}
