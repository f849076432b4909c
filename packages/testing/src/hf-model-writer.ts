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
  spmTokenizerJson,
  syntheticTensor,
} from '@butterfly/core'
import { sentencepieceSpelling } from './format-writers.js'
import { paddedTestVocab } from './gguf-model-writer.js'

/** Every tensor `config` needs, seeded (core's synthetic weights), float32 in HF layout. */
export function seededWeights(config: ModelConfig, seed: number): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>()
  for (const name of expectedWeightShapes(config).keys()) out.set(name, syntheticTensor(config, name, seed))
  return out
}

/**
 * config.json (modelConfigToJson), model.safetensors (F32), and tokenizer.json and
 * tokenizer_config.json of the test vocabulary (the one ggufModelFile writes) as Hugging Face's
 * LlamaConverter writes a SentencePiece model (core's spmTokenizerJson: the tokenizer is not
 * what these checkpoints test).
 */
export function hfModelFiles(
  config: ModelConfig,
  weights: ReadonlyMap<string, Float32Array>,
): Map<string, Uint8Array> {
  const tensors = [...expectedWeightShapes(config)].map(([name, shape]) => {
    const w = weights.get(name)
    if (w === undefined) throw new Error(`test weights lack ${name}`)
    return { name, dtype: 'F32' as const, shape, data: fromFloat32(w, 'F32') }
  })
  const vocab = paddedTestVocab(config.vocabSize)
  const { tokens, types } = sentencepieceSpelling(vocab.pieces)
  const tokenizer = spmTokenizerJson({
    pieces: tokens,
    scores: vocab.scores,
    types,
    bosId: 1,
    eosId: 2,
    unkId: 0,
  })
  const json = (v: unknown) => new TextEncoder().encode(`${JSON.stringify(v, null, 2)}\n`)
  return new Map([
    ['config.json', json(modelConfigToJson(config))],
    ['model.safetensors', encodeSafetensors(tensors, { format: 'pt' })],
    ['tokenizer.json', json(tokenizer.json)],
    ...(tokenizer.config === undefined ? [] : ([['tokenizer_config.json', json(tokenizer.config)]] as const)),
  ])
}
