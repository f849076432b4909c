import type { ModelConfig } from '@butterfly/core'
import { TrainError } from './errors.js'

/** Vocabulary of core's byte tokenizer: 3 specials + 256 bytes, so byte-level = character-level on ASCII. */
export const BYTE_VOCAB = 259

/** The architecture knobs the trainer exposes; everything else is fixed Llama. */
export interface ModelShape {
  readonly layers: number
  readonly hidden: number
  readonly heads: number
  readonly kvHeads: number
  readonly ffn: number
  /** Training sequence length, which is also the model's max_position_embeddings. */
  readonly context: number
}

export const MODEL_PRESETS = {
  /** For tests: trains in seconds. */
  tiny: { layers: 2, hidden: 32, heads: 4, kvHeads: 2, ffn: 64, context: 32 },
  /** The committed default model (models/shakespeare). */
  shakespeare: { layers: 4, hidden: 128, heads: 4, kvHeads: 4, ffn: 384, context: 320 },
} as const satisfies Record<string, ModelShape>

export type ModelPresetName = keyof typeof MODEL_PRESETS

/** Llama config for a shape: byte vocabulary, tied head, no biases, rope_theta 10000. */
export function configForShape(s: ModelShape): ModelConfig {
  for (const [k, v] of Object.entries(s)) {
    if (!Number.isSafeInteger(v) || v < 1)
      throw new TrainError('ERR_TRAIN_CONFIG', `${k} must be a positive integer, got ${v}`)
  }
  if (s.hidden % s.heads !== 0) {
    throw new TrainError('ERR_TRAIN_CONFIG', `hidden (${s.hidden}) must be a multiple of heads (${s.heads})`)
  }
  const headDim = s.hidden / s.heads
  if (headDim % 2 !== 0)
    throw new TrainError('ERR_TRAIN_CONFIG', `head size ${headDim} must be even for RoPE`)
  if (s.heads % s.kvHeads !== 0) {
    throw new TrainError(
      'ERR_TRAIN_CONFIG',
      `heads (${s.heads}) must be a multiple of kv heads (${s.kvHeads})`,
    )
  }
  return {
    architecture: 'llama',
    hiddenSize: s.hidden,
    numLayers: s.layers,
    numHeads: s.heads,
    numKvHeads: s.kvHeads,
    headDim,
    intermediateSize: s.ffn,
    vocabSize: BYTE_VOCAB,
    ropeTheta: 10_000,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: true,
    maxContext: s.context,
    attentionBias: false,
    bosTokenId: 1,
    eosTokenId: 2,
  }
}
