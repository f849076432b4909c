import { architectureTraits } from '../model/architecture.js'
import type { ModelConfig } from '../model/model-config.js'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, layerWeightNames } from '../model/weight-names.js'
import type { ByteSource } from '../weights/byte-source.js'
import { ggufModelConfig } from './gguf-hparams.js'
import { MetadataReader } from './gguf-metadata.js'
import { type GgufFile, readGguf } from './gguf-reader.js'
import { type GgufTensorRead, ggufTensor, readGgufFloats, tensorInfo } from './gguf-tensor.js'
import { ggufTokenizer } from './gguf-tokenizer.js'
import type { ImportSource } from './import-source.js'

/**
 * Opens a GGUF file of a llama.cpp architecture we run (llama, qwen2, qwen3, phi3, gemma3) as a
 * Hugging Face checkpoint of that family.
 */
export async function openGgufModel(source: ByteSource): Promise<ImportSource> {
  const file = await readGguf(source)
  const small = async (name: string) => {
    const info = file.tensors.get(name)
    return info === undefined ? undefined : await readGgufFloats(file, info)
  }
  return ggufModel(file, {
    ropeFreqs: await small('rope_freqs.weight'),
    ropeFactorsLong: await small('rope_factors_long.weight'),
    ropeFactorsShort: await small('rope_factors_short.weight'),
  })
}

/** The small RoPE tensors, read before the config is built (their values are config). */
export interface GgufRopeTensors {
  /** rope_freqs.weight: the converter's baked Llama 3 scaling. */
  readonly ropeFreqs?: Float32Array | undefined
  /** rope_factors_long/short.weight: Phi-3's LongRoPE factors. */
  readonly ropeFactorsLong?: Float32Array | undefined
  readonly ropeFactorsShort?: Float32Array | undefined
}

/**
 * Maps llama.cpp's tensors (token_embd, blk.N.attn_q, ..., output_norm, output; no output means
 * tied embeddings) and metadata onto Hugging Face names and config. `rope` holds the file's RoPE
 * factor tensors, read beforehand (openGgufModel does).
 */
export function ggufModel(file: GgufFile, rope: GgufRopeTensors = {}): ImportSource {
  const meta = new MetadataReader(file)
  const embed = tensorInfo(file, 'token_embd.weight')
  const vocabSize = embed.dims[1] ?? 0
  const config = ggufModelConfig(file, meta, {
    vocabSize,
    untiedHead: file.tensors.has('output.weight'),
    attentionBias: file.tensors.has('blk.0.attn_q.bias'),
    ...rope,
  })
  const tokenizer = ggufTokenizer(file, meta, vocabSize)
  const tensors = ggufTensorPlan(config, meta.string('general.architecture')).map((t) =>
    ggufTensor(file, tensorInfo(file, t.gguf), t.hf, t.shape, t.how),
  )
  return { format: 'gguf', config, tensors, tokenizer }
}

/** One tensor of the mapping: llama.cpp's name, ours, the PyTorch shape, how to convert it. */
export interface GgufTensorMapping {
  readonly gguf: string
  readonly hf: string
  readonly shape: readonly number[]
  readonly how?: GgufTensorRead
}

/**
 * Every tensor of `config` as llama.cpp's converter names it for GGUF arch `arch`. Only the llama
 * arch (rope type NORM) stores q/k rows in Meta's interleaved order; qwen2, qwen3, phi3 and gemma3
 * use NEOX rope (rotate_half) and are stored as HF has them. Gemma's norms are stored as 1 + w.
 */
export function ggufTensorPlan(config: ModelConfig, arch: string): GgufTensorMapping[] {
  const traits = architectureTraits(config.architecture)
  const { hiddenSize: h, intermediateSize: ff, vocabSize: v, headDim } = config
  const qDim = config.numHeads * headDim
  const kvDim = config.numKvHeads * headDim
  const norm: GgufTensorRead | undefined = traits.normOffset === 0 ? undefined : { offset: traits.normOffset }
  const permute = (heads: number): GgufTensorRead | undefined =>
    arch === 'llama' ? { ropeHeads: heads, headDim } : undefined
  const out: GgufTensorMapping[] = []
  const add = (gguf: string, hf: string, shape: readonly number[], how?: GgufTensorRead) =>
    out.push({ gguf, hf, shape, ...(how === undefined ? {} : { how }) })
  add('token_embd.weight', EMBED_TOKENS, [v, h])
  for (let l = 0; l < config.numLayers; l++) {
    const n = layerWeightNames(l)
    const b = `blk.${l}`
    add(`${b}.attn_norm.weight`, n.inputNorm, [h], norm)
    if (traits.fusedProjections) add(`${b}.attn_qkv.weight`, n.qkv, [qDim + 2 * kvDim, h])
    else {
      add(`${b}.attn_q.weight`, n.q, [qDim, h], permute(config.numHeads))
      add(`${b}.attn_k.weight`, n.k, [kvDim, h], permute(config.numKvHeads))
      add(`${b}.attn_v.weight`, n.v, [kvDim, h])
    }
    if (config.attentionBias) {
      if (traits.fusedProjections)
        add(`${b}.attn_qkv.bias`, n.qkv.replace(/weight$/, 'bias'), [qDim + 2 * kvDim])
      else {
        add(`${b}.attn_q.bias`, n.qBias, [qDim], permute(config.numHeads))
        add(`${b}.attn_k.bias`, n.kBias, [kvDim], permute(config.numKvHeads))
        add(`${b}.attn_v.bias`, n.vBias, [kvDim])
      }
    }
    if (traits.qkNorm) {
      add(`${b}.attn_q_norm.weight`, n.qNorm, [headDim], norm)
      add(`${b}.attn_k_norm.weight`, n.kNorm, [headDim], norm)
    }
    add(`${b}.attn_output.weight`, n.o, [h, qDim])
    if (traits.sandwichNorms) {
      add(`${b}.post_attention_norm.weight`, n.postAttentionNorm, [h], norm)
      add(`${b}.ffn_norm.weight`, n.preFeedforwardNorm, [h], norm)
      add(`${b}.post_ffw_norm.weight`, n.postFeedforwardNorm, [h], norm)
    } else add(`${b}.ffn_norm.weight`, n.postAttentionNorm, [h], norm)
    // Phi-3's ffn_up holds [gate; up] (llama.cpp's fused SwiGLU activates the first half).
    if (traits.fusedProjections) add(`${b}.ffn_up.weight`, n.gateUp, [2 * ff, h])
    else {
      add(`${b}.ffn_gate.weight`, n.gate, [ff, h])
      add(`${b}.ffn_up.weight`, n.up, [ff, h])
    }
    add(`${b}.ffn_down.weight`, n.down, [h, ff])
  }
  add('output_norm.weight', FINAL_NORM, [h], norm)
  if (!config.tieWordEmbeddings) add('output.weight', LM_HEAD, [v, h])
  return out
}
