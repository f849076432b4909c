import { ModelConfigError, ModelFileError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import { validateModelConfig } from '../model/validate-model-config.js'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, layerWeightNames } from '../model/weight-names.js'
import { type ByteSource, readExact } from '../weights/byte-source.js'
import { ByteCursor } from './byte-cursor.js'
import { type ImportSource, type ImportTensor, metaToHfRows } from './import-source.js'

/** "ak42" read as a little-endian uint32: the magic of llama2.c's versioned exports. */
const LLAMA2C_MAGIC = 0x616b3432
const V1_HEADER_BYTES = 256
const HEADER_FIELDS = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len']

/** The 7-int header of a llama2.c checkpoint. */
export interface Llama2cHeader {
  readonly version: 0 | 1
  readonly dim: number
  readonly hiddenDim: number
  readonly numLayers: number
  readonly numHeads: number
  readonly numKvHeads: number
  readonly vocabSize: number
  readonly seqLen: number
  /** The classifier is the token embedding (no wcls array in the file). */
  readonly sharedClassifier: boolean
}

type Section =
  | 'embed'
  | 'rmsAtt'
  | 'wq'
  | 'wk'
  | 'wv'
  | 'wo'
  | 'rmsFfn'
  | 'w1'
  | 'w2'
  | 'w3'
  | 'rmsFinal'
  | 'freqCis'
  | 'wcls'

/** Array order of export.py's legacy_export (version 0, what run.c reads) and version1_export. */
const ORDER: Readonly<Record<0 | 1, readonly Section[]>> = {
  0: ['embed', 'rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3', 'rmsFinal', 'freqCis', 'wcls'],
  1: ['rmsAtt', 'rmsFfn', 'rmsFinal', 'embed', 'wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3', 'wcls'],
}

/**
 * Opens a llama2.c checkpoint: the legacy format run.c reads (7 int32s, a negative vocab_size
 * meaning a separate classifier follows, float32 arrays stacked over layers, then the unused
 * freq_cis tables) or export.py's version 1 (the "ak42" 256-byte header). q/k rows are turned
 * from llama2.c's interleaved RoPE into Hugging Face's rotate_half layout as they are read.
 * RoPE theta 10000 and RMSNorm eps 1e-5 are what run.c hard-codes; BOS is 1 and EOS 2.
 */
export async function openLlama2cCheckpoint(source: ByteSource): Promise<ImportSource> {
  const header = await readLlama2cHeader(source)
  const config = llama2cConfig(source.name, header)
  const { dim, hiddenDim, numLayers: L, numHeads, numKvHeads, vocabSize: v } = header
  const headDim = dim / numHeads
  const kvDim = numKvHeads * headDim
  const sizes: Record<Section, number> = {
    embed: v * dim,
    rmsAtt: L * dim,
    wq: L * dim * dim,
    wk: L * kvDim * dim,
    wv: L * kvDim * dim,
    wo: L * dim * dim,
    rmsFfn: L * dim,
    w1: L * hiddenDim * dim,
    w2: L * dim * hiddenDim,
    w3: L * hiddenDim * dim,
    rmsFinal: dim,
    freqCis: header.seqLen * headDim, // cos and sin, seq_len x head_dim/2 each
    wcls: header.sharedClassifier ? 0 : v * dim,
  }
  const starts = new Map<Section, number>()
  let cursor = header.version === 0 ? 4 * HEADER_FIELDS.length : V1_HEADER_BYTES
  for (const s of ORDER[header.version]) {
    starts.set(s, cursor)
    cursor += 4 * sizes[s]
  }
  if (source.size !== cursor) {
    const code = source.size < cursor ? 'ERR_MODEL_FILE_TRUNCATED' : 'ERR_MODEL_FILE_HEADER'
    const msg = `the header (${describeHeader(header)}) implies ${cursor} bytes, the file has ${source.size}`
    throw new ModelFileError(code, source.name, msg)
  }

  const tensors: ImportTensor[] = []
  const add = (name: string, shape: number[], section: Section, layer: number, ropeHeads?: number) => {
    const elements = shape.reduce((a, b) => a * b, 1)
    const offset = (starts.get(section) as number) + 4 * layer * elements
    tensors.push({
      name,
      shape,
      sourceType: 'F32',
      sourceBytes: 4 * elements,
      async read(signal) {
        let data = await readExact(source, offset, 4 * elements, { what: `tensor ${name}`, signal })
        if (ropeHeads !== undefined) data = metaToHfRows(data, ropeHeads, headDim, 4 * dim)
        return { dtype: 'F32', shape, data }
      },
    })
  }
  add(EMBED_TOKENS, [v, dim], 'embed', 0)
  for (let l = 0; l < L; l++) {
    const n = layerWeightNames(l)
    add(n.inputNorm, [dim], 'rmsAtt', l)
    add(n.q, [dim, dim], 'wq', l, numHeads)
    add(n.k, [kvDim, dim], 'wk', l, numKvHeads)
    add(n.v, [kvDim, dim], 'wv', l)
    add(n.o, [dim, dim], 'wo', l)
    add(n.postAttentionNorm, [dim], 'rmsFfn', l)
    add(n.gate, [hiddenDim, dim], 'w1', l)
    add(n.up, [hiddenDim, dim], 'w3', l)
    add(n.down, [dim, hiddenDim], 'w2', l)
  }
  add(FINAL_NORM, [dim], 'rmsFinal', 0)
  if (!header.sharedClassifier) add(LM_HEAD, [v, dim], 'wcls', 0)
  return { format: 'llama2c', config, tensors }
}

/** Reads and checks the header; every field is named as llama2.c names it. */
export async function readLlama2cHeader(source: ByteSource): Promise<Llama2cHeader> {
  const cur = new ByteCursor(source, 0, V1_HEADER_BYTES)
  cur.context = 'llama2.c header'
  if (source.size < 4 * HEADER_FIELDS.length) {
    throw cur.fail('ERR_MODEL_FILE_TRUNCATED', `file is ${source.size} bytes, shorter than the header`)
  }
  let version: 0 | 1 = 0
  if ((await cur.u32()) === LLAMA2C_MAGIC) {
    const v = await cur.i32()
    if (v !== 1) {
      const what = v === 2 ? ' (int8 Q8_0 export)' : ''
      throw new ModelFileError(
        'ERR_MODEL_FILE_VERSION',
        source.name,
        `llama2.c checkpoint version ${v}${what} is not supported; export with --version 0 or 1`,
      )
    }
    version = 1
  } else {
    cur.seek(0)
  }
  const f: number[] = []
  for (let i = 0; i < HEADER_FIELDS.length; i++) f.push(await cur.i32())
  const [dim, hiddenDim, numLayers, numHeads, numKvHeads, rawVocab, seqLen] = f as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ]
  const shared = version === 1 ? (await cur.u8()) !== 0 : rawVocab > 0
  const bad = (field: string, msg: string) =>
    new ModelFileError('ERR_MODEL_FILE_HEADER', source.name, `llama2.c header: ${field} ${msg}`)
  f.forEach((value, i) => {
    const field = HEADER_FIELDS[i] as string
    if (field === 'vocab_size' ? value === 0 : value <= 0) throw bad(field, `must be positive, got ${value}`)
  })
  if (version === 1 && rawVocab < 0) throw bad('vocab_size', `must be positive in version 1, got ${rawVocab}`)
  if (dim % numHeads !== 0) throw bad('dim', `${dim} is not divisible by n_heads ${numHeads}`)
  if (numHeads % numKvHeads !== 0)
    throw bad('n_heads', `${numHeads} is not divisible by n_kv_heads ${numKvHeads}`)
  if ((dim / numHeads) % 2 !== 0) throw bad('dim', `/ n_heads = ${dim / numHeads} must be even for RoPE`)
  const header: Llama2cHeader = {
    version,
    dim,
    hiddenDim,
    numLayers,
    numHeads,
    numKvHeads,
    vocabSize: Math.abs(rawVocab),
    seqLen,
    sharedClassifier: shared,
  }
  llama2cConfig(source.name, header) // caps every size before the caller multiplies them
  return header
}

function llama2cConfig(file: string, h: Llama2cHeader): ModelConfig {
  const config: ModelConfig = {
    architecture: 'llama',
    hiddenSize: h.dim,
    numLayers: h.numLayers,
    numHeads: h.numHeads,
    numKvHeads: h.numKvHeads,
    headDim: h.dim / h.numHeads,
    intermediateSize: h.hiddenDim,
    vocabSize: h.vocabSize,
    ropeTheta: 10_000,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: h.sharedClassifier,
    maxContext: h.seqLen,
    attentionBias: false,
    bosTokenId: h.vocabSize > 1 ? 1 : undefined,
    eosTokenId: h.vocabSize > 2 ? 2 : undefined,
  }
  try {
    return validateModelConfig(config, 'llama2.c header as a config')
  } catch (err) {
    if (!(err instanceof ModelConfigError)) throw err
    throw new ModelFileError('ERR_MODEL_FILE_HEADER', file, err.message, { cause: err })
  }
}

function describeHeader(h: Llama2cHeader): string {
  return (
    `dim ${h.dim}, hidden_dim ${h.hiddenDim}, n_layers ${h.numLayers}, n_heads ${h.numHeads}, ` +
    `n_kv_heads ${h.numKvHeads}, vocab_size ${h.vocabSize}, seq_len ${h.seqLen}, ` +
    `${h.sharedClassifier ? 'shared' : 'separate'} classifier`
  )
}
