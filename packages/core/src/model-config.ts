/** Llama-family architectures we accept; all share one graph (qwen2 adds q/k/v biases). */
export type Architecture = 'llama' | 'mistral' | 'qwen2' | 'smollm'

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
}
