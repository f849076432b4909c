import { ModelConfigError, ModelFileError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import { validateModelConfig } from '../model/validate-model-config.js'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, layerWeightNames } from '../model/weight-names.js'
import { type ByteSource, readExact } from '../weights/byte-source.js'
import { fromFloat32 } from '../weights/float16.js'
import { canDequantize, dequantizeGgml } from './ggml-dequant.js'
import { MetadataReader } from './gguf-metadata.js'
import { type GgufFile, type GgufTensorInfo, readGguf } from './gguf-reader.js'
import { ggufTokenizer } from './gguf-tokenizer.js'
import { type ImportSource, type ImportTensor, metaToHfRows } from './import-source.js'

/** ggml types whose bytes are already what a safetensors file stores. */
const PLAIN: Readonly<Record<string, 'F32' | 'F16' | 'BF16'>> = { F32: 'F32', F16: 'F16', BF16: 'BF16' }
const ELEMENT_BYTES = { F32: 4, F16: 2, BF16: 2 } as const

/** Opens a GGUF file of the llama architecture as a Hugging Face Llama checkpoint. */
export async function openGgufLlama(source: ByteSource): Promise<ImportSource> {
  return ggufLlama(await readGguf(source))
}

/**
 * Maps llama.cpp's llama tensors (token_embd, blk.N.attn_q, ..., output_norm, output; no output
 * means tied embeddings) and metadata (llama.embedding_length, ...) onto Hugging Face names and
 * config. llama.cpp's converter stores attn_q/attn_k rows in Meta's interleaved RoPE order, so
 * they are permuted back to rotate_half on read. The vocabulary comes from tokenizer.ggml.*.
 */
export function ggufLlama(file: GgufFile): ImportSource {
  const name = file.source.name
  const meta = new MetadataReader(file)
  const arch = meta.string('general.architecture')
  if (arch !== 'llama') {
    throw new ModelConfigError(`${name}: general.architecture "${arch}" is not supported (only llama)`)
  }
  const experts = meta.optionalInt('llama.expert_count')
  if (experts !== undefined && experts > 0) {
    throw new ModelConfigError(
      `${name}: llama.expert_count ${experts}: mixture-of-experts models are not supported`,
    )
  }
  const scaling = meta.optionalString('llama.rope.scaling.type')
  if ((scaling !== undefined && scaling !== 'none') || file.tensors.has('rope_freqs.weight')) {
    throw new ModelConfigError(`${name}: RoPE scaling (${scaling ?? 'rope_freqs.weight'}) is not supported`)
  }
  const embed = tensorInfo(file, 'token_embd.weight')
  const hiddenSize = meta.int('llama.embedding_length')
  const numHeads = meta.int('llama.attention.head_count')
  const headDim = meta.optionalInt('llama.attention.key_length') ?? hiddenSize / numHeads
  const ropeDims = meta.optionalInt('llama.rope.dimension_count')
  if (ropeDims !== undefined && ropeDims !== headDim) {
    throw new ModelConfigError(
      `${name}: llama.rope.dimension_count ${ropeDims} (partial rotary) is not supported`,
    )
  }
  const valueLength = meta.optionalInt('llama.attention.value_length')
  if (valueLength !== undefined && valueLength !== headDim) {
    throw new ModelConfigError(
      `${name}: llama.attention.value_length ${valueLength} differs from key_length ${headDim}`,
    )
  }
  const vocabSize = embed.dims[1] ?? 0
  const tokenizer = ggufTokenizer(file, meta, vocabSize)
  const config = checkConfig(name, {
    architecture: 'llama',
    hiddenSize,
    numLayers: meta.int('llama.block_count'),
    numHeads,
    numKvHeads: meta.optionalInt('llama.attention.head_count_kv') ?? numHeads,
    headDim,
    intermediateSize: meta.int('llama.feed_forward_length'),
    vocabSize,
    ropeTheta: meta.optionalNumber('llama.rope.freq_base') ?? 10_000,
    rmsNormEps: meta.number('llama.attention.layer_norm_rms_epsilon'),
    tieWordEmbeddings: !file.tensors.has('output.weight'),
    maxContext: meta.int('llama.context_length'),
    attentionBias: false,
    bosTokenId: meta.optionalInt('tokenizer.ggml.bos_token_id'),
    eosTokenId: meta.optionalInt('tokenizer.ggml.eos_token_id'),
  })

  const tensors: ImportTensor[] = []
  const add = (hfName: string, ggufName: string, shape: number[], ropeHeads?: number) => {
    tensors.push(ggufTensor(file, tensorInfo(file, ggufName), hfName, shape, ropeHeads, headDim))
  }
  const { hiddenSize: h, intermediateSize: ff } = config
  const qDim = config.numHeads * headDim
  const kvDim = config.numKvHeads * headDim
  add(EMBED_TOKENS, 'token_embd.weight', [vocabSize, h])
  for (let l = 0; l < config.numLayers; l++) {
    const n = layerWeightNames(l)
    const b = `blk.${l}`
    add(n.inputNorm, `${b}.attn_norm.weight`, [h])
    add(n.q, `${b}.attn_q.weight`, [qDim, h], config.numHeads)
    add(n.k, `${b}.attn_k.weight`, [kvDim, h], config.numKvHeads)
    add(n.v, `${b}.attn_v.weight`, [kvDim, h])
    add(n.o, `${b}.attn_output.weight`, [h, qDim])
    add(n.postAttentionNorm, `${b}.ffn_norm.weight`, [h])
    add(n.gate, `${b}.ffn_gate.weight`, [ff, h])
    add(n.up, `${b}.ffn_up.weight`, [ff, h])
    add(n.down, `${b}.ffn_down.weight`, [h, ff])
  }
  add(FINAL_NORM, 'output_norm.weight', [h])
  if (!config.tieWordEmbeddings) add(LM_HEAD, 'output.weight', [vocabSize, h])
  return { format: 'gguf', config, tensors, tokenizer }
}

function ggufTensor(
  file: GgufFile,
  info: GgufTensorInfo,
  hfName: string,
  shape: number[],
  ropeHeads: number | undefined,
  headDim: number,
): ImportTensor {
  const fail = (code: 'ERR_MODEL_FILE_SHAPE' | 'ERR_MODEL_FILE_DTYPE', msg: string) =>
    new ModelFileError(code, file.source.name, msg, { tensor: info.name })
  const plain = Object.hasOwn(PLAIN, info.type.name) ? PLAIN[info.type.name] : undefined
  if (plain === undefined && !canDequantize(info.type)) {
    throw fail(
      'ERR_MODEL_FILE_DTYPE',
      `ggml type ${info.type.name} is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K are)`,
    )
  }
  // ggml lists dims innermost first; PyTorch outermost first.
  const torchShape = [...info.dims].reverse()
  if (torchShape.length !== shape.length || torchShape.some((d, i) => d !== shape[i])) {
    throw fail(
      'ERR_MODEL_FILE_SHAPE',
      `expected shape [${shape.join(', ')}], file has [${torchShape.join(', ')}]`,
    )
  }
  return {
    name: hfName,
    shape,
    sourceType: info.type.name,
    sourceBytes: info.end - info.begin,
    async read(signal) {
      const bytes = await readExact(file.source, info.begin, info.end - info.begin, {
        what: `tensor ${info.name}`,
        signal,
      })
      const dtype = plain ?? 'F32'
      let data = plain === undefined ? fromFloat32(dequantizeGgml(info.type, bytes), 'F32') : bytes
      const rowBytes = (shape[shape.length - 1] as number) * ELEMENT_BYTES[dtype]
      if (ropeHeads !== undefined) data = metaToHfRows(data, ropeHeads, headDim, rowBytes)
      return { dtype, shape, data }
    },
  }
}

function tensorInfo(file: GgufFile, name: string): GgufTensorInfo {
  const info = file.tensors.get(name)
  if (info === undefined) {
    throw new ModelFileError('ERR_MODEL_TENSOR_MISSING', file.source.name, 'tensor not in file', {
      tensor: name,
    })
  }
  return info
}

function checkConfig(file: string, config: ModelConfig): ModelConfig {
  return validateModelConfig(config, `${file} (GGUF metadata as a config)`)
}
