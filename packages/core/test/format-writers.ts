/**
 * Test-only writers for the foreign formats the importers read: llama2.c model.bin (legacy and
 * version 1) and tokenizer.bin, GGUF v3 with F32/F16/Q8_0/Q4_0 tensors, and the Hugging Face
 * layout of the same weights. Each follows the format's own writer (llama2.c export.py,
 * llama.cpp's gguf-py and ggml quantize_row_*_ref), not the import code.
 */
import { f32ToF16Bits, fromFloat32 } from '../src/float16.js'
import type { Llama2cDims, Llama2cWeights } from './llama2c-reference.js'

/** mulberry32: small, seeded, the same on every platform. */
export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Seeded llama2.c weights; `shared` leaves the classifier out (tied to the embedding). */
export function knownWeights(dims: Llama2cDims, seed: number, shared: boolean): Llama2cWeights {
  const r = rng(seed)
  const mat = (rows: number, cols: number, scale = 1 / Math.sqrt(cols)) =>
    Float32Array.from({ length: rows * cols }, () => (r() * 2 - 1) * scale * 1.7)
  const norm = (n: number) => Float32Array.from({ length: n }, () => 0.8 + 0.4 * r())
  const { dim, hiddenDim: hd, nLayers: L, nHeads, nKvHeads, vocabSize: v } = dims
  const kvDim = (dim * nKvHeads) / nHeads
  const layers = <T>(make: () => T) => Array.from({ length: L }, make)
  const w: Llama2cWeights = {
    dims,
    // Strong residual branches keep tied-embedding models from echoing their last token.
    embed: mat(v, dim, 0.5),
    rmsAtt: layers(() => norm(dim)),
    wq: layers(() => mat(dim, dim)),
    wk: layers(() => mat(kvDim, dim)),
    wv: layers(() => mat(kvDim, dim)),
    wo: layers(() => mat(dim, dim, 4 / Math.sqrt(dim))),
    rmsFfn: layers(() => norm(dim)),
    w1: layers(() => mat(hd, dim)),
    w2: layers(() => mat(dim, hd, 4 / Math.sqrt(hd))),
    w3: layers(() => mat(hd, dim)),
    rmsFinal: norm(dim),
  }
  if (!shared) w.wcls = mat(v, dim, 1 / Math.sqrt(dim))
  return w
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.byteLength
  }
  return out
}

const f32 = (a: Float32Array) => new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength))
const ints = (values: number[]) => new Uint8Array(Int32Array.from(values).buffer)

/** export.py's legacy_export (version 0) or version1_export. */
export function llama2cModelBin(w: Llama2cWeights, version: 0 | 1 = 0): Uint8Array {
  const d = w.dims
  const shared = w.wcls === undefined
  const headSize = d.dim / d.nHeads
  const fields = [d.dim, d.hiddenDim, d.nLayers, d.nHeads, d.nKvHeads, d.vocabSize, d.seqLen]
  const all = (xs: Float32Array[]) => xs.map(f32)
  if (version === 0) {
    if (!shared) fields[5] = -d.vocabSize
    // freq_cis_real / imag: [seq_len, head_size / 2] each; run.c skips them, so any values do.
    const freqs = new Float32Array(d.seqLen * headSize).fill(0.5)
    return concat([
      ints(fields),
      f32(w.embed),
      ...all(w.rmsAtt),
      ...all(w.wq),
      ...all(w.wk),
      ...all(w.wv),
      ...all(w.wo),
      ...all(w.rmsFfn),
      ...all(w.w1),
      ...all(w.w2),
      ...all(w.w3),
      f32(w.rmsFinal),
      f32(freqs),
      ...(shared ? [] : [f32(w.wcls as Float32Array)]),
    ])
  }
  const header = new Uint8Array(256)
  const view = new DataView(header.buffer)
  view.setUint32(0, 0x616b3432, true)
  view.setInt32(4, 1, true)
  fields.forEach((v, i) => {
    view.setInt32(8 + 4 * i, v, true)
  })
  view.setUint8(36, shared ? 1 : 0)
  return concat([
    header,
    ...all(w.rmsAtt),
    ...all(w.rmsFfn),
    f32(w.rmsFinal),
    f32(w.embed),
    ...all(w.wq),
    ...all(w.wk),
    ...all(w.wv),
    ...all(w.wo),
    ...all(w.w1),
    ...all(w.w2),
    ...all(w.w3),
    ...(shared ? [] : [f32(w.wcls as Float32Array)]),
  ])
}

/** llama2.c's tokenizer.bin (export in tokenizer.py): pieces already in llama2.c spelling. */
export function tokenizerBin(pieces: readonly string[], scores: readonly number[]): Uint8Array {
  const enc = pieces.map((p) => new TextEncoder().encode(p))
  const maxLen = Math.max(...enc.map((b) => b.byteLength))
  const parts: Uint8Array[] = [ints([maxLen])]
  enc.forEach((b, i) => {
    parts.push(new Uint8Array(Float32Array.of(scores[i] as number).buffer), ints([b.byteLength]), b)
  })
  return concat(parts)
}

/**
 * A small SentencePiece-style vocabulary in llama2.c spelling: <unk>, BOS, EOS, the 256 byte
 * pieces, single characters, and merged pieces whose scores decrease with their position.
 */
export function testVocab(): { pieces: string[]; scores: number[] } {
  const pieces = ['<unk>', '\n<s>\n', '\n</s>\n']
  const scores = [0, 0, 0]
  for (let b = 0; b < 256; b++) {
    pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`)
    scores.push(0)
  }
  const merged = [
    ' t',
    'th',
    ' th',
    'he',
    ' the',
    'the',
    'll',
    'ell',
    'hell',
    'hello',
    ' h',
    ' hello',
    'lo',
    'or',
    'wor',
    'world',
    ' w',
    ' world',
    'en',
    'an',
    ' a',
    'nd',
    ' and',
    'er',
    '中文',
    ' é',
    'ét',
    'é t',
    '  ',
    '   ',
    'at',
    ' at',
    'ea',
    'e ',
    ',',
    'T',
    'he ',
    ' wo',
    'rl',
    'rld',
  ]
  const chars = [' ', 'e', 't', 'a', 'o', 'h', 'n', 's', 'l', 'r', 'd', 'w', 'H', '.', 'é', '中', '文', 'i']
  merged.forEach((p, i) => {
    pieces.push(p)
    scores.push(-i)
  })
  chars.forEach((c, i) => {
    if (pieces.includes(c)) return
    pieces.push(c)
    scores.push(-1000 - i)
  })
  return { pieces, scores }
}

/** The same vocabulary as sentencepiece spells it (▁, <s>, </s>) with GGUF token types. */
export function sentencepieceSpelling(pieces: readonly string[]): { tokens: string[]; types: number[] } {
  const tokens = pieces.map((p, id) => (id === 1 ? '<s>' : id === 2 ? '</s>' : p.replaceAll(' ', '\u2581')))
  const types = tokens.map((t, id) => (id === 0 ? 2 : id <= 2 ? 3 : /^<0x[0-9A-F]{2}>$/.test(t) ? 6 : 1))
  return { tokens, types }
}

/** HF's convert_llama_weights_to_hf permute: w.view(heads, d/2, 2, cols).transpose(1, 2). */
export function hfPermute(w: Float32Array, heads: number, cols: number): Float32Array {
  const rows = w.length / cols
  const half = rows / heads / 2
  const out = new Float32Array(w.length)
  // out[h][a][b][:] = w[h][b][a][:] with w viewed as [heads, half, 2, cols], out as [heads, 2, half, cols]
  for (let h = 0; h < heads; h++)
    for (let a = 0; a < 2; a++)
      for (let b = 0; b < half; b++) {
        const src = ((h * half + b) * 2 + a) * cols
        const dst = ((h * 2 + a) * half + b) * cols
        out.set(w.subarray(src, src + cols), dst)
      }
  return out
}

// ---------------------------------------------------------------------------------------------
// GGUF

export type GgufMeta =
  | { key: string; type: 'u32' | 'i32' | 'f32' | 'u64' | 'f64' | 'u8'; value: number }
  | { key: string; type: 'bool'; value: boolean }
  | { key: string; type: 'string'; value: string }
  | { key: string; type: 'strings'; value: string[] }
  | { key: string; type: 'f32s' | 'i32s'; value: number[] }

export interface GgufTensorSpec {
  name: string
  /** ggml order (innermost first). */
  dims: number[]
  type: number
  data: Uint8Array
}

const TYPE_IDS = { u8: 0, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, f64: 12 }

/** Writes a GGUF file as gguf-py's GGUFWriter does (little-endian, tensors aligned). */
export function writeGguf(
  meta: readonly GgufMeta[],
  tensors: readonly GgufTensorSpec[],
  options: { version?: number; alignment?: number } = {},
): Uint8Array {
  const alignment = options.alignment ?? 32
  const parts: number[] = []
  const bytes = (b: Uint8Array) => parts.push(...b)
  const u32 = (v: number) => bytes(new Uint8Array(Uint32Array.of(v).buffer))
  const u64 = (v: number) => bytes(new Uint8Array(BigUint64Array.of(BigInt(v)).buffer))
  const str = (s: string) => {
    const b = new TextEncoder().encode(s)
    u64(b.byteLength)
    bytes(b)
  }
  bytes(new TextEncoder().encode('GGUF'))
  u32(options.version ?? 3)
  u64(tensors.length)
  u64(meta.length)
  for (const m of meta) {
    str(m.key)
    switch (m.type) {
      case 'string':
        u32(TYPE_IDS.string)
        str(m.value)
        break
      case 'strings':
        u32(TYPE_IDS.array)
        u32(TYPE_IDS.string)
        u64(m.value.length)
        for (const s of m.value) str(s)
        break
      case 'f32s':
      case 'i32s':
        u32(TYPE_IDS.array)
        u32(m.type === 'f32s' ? TYPE_IDS.f32 : TYPE_IDS.i32)
        u64(m.value.length)
        bytes(
          new Uint8Array((m.type === 'f32s' ? Float32Array.from(m.value) : Int32Array.from(m.value)).buffer),
        )
        break
      case 'bool':
        u32(TYPE_IDS.bool)
        parts.push(m.value ? 1 : 0)
        break
      default:
        u32(TYPE_IDS[m.type])
        if (m.type === 'u32') u32(m.value)
        else if (m.type === 'u8') parts.push(m.value)
        else if (m.type === 'i32') bytes(new Uint8Array(Int32Array.of(m.value).buffer))
        else if (m.type === 'f32') bytes(new Uint8Array(Float32Array.of(m.value).buffer))
        else if (m.type === 'u64') u64(m.value)
        else bytes(new Uint8Array(Float64Array.of(m.value).buffer))
    }
  }
  let offset = 0
  const offsets: number[] = []
  for (const t of tensors) {
    str(t.name)
    u32(t.dims.length)
    for (const d of t.dims) u64(d)
    u32(t.type)
    u64(offset)
    offsets.push(offset)
    offset += Math.ceil(t.data.byteLength / alignment) * alignment
  }
  while (parts.length % alignment !== 0) parts.push(0)
  const head = Uint8Array.from(parts)
  const out = new Uint8Array(head.byteLength + offset)
  out.set(head)
  tensors.forEach((t, i) => {
    out.set(t.data, head.byteLength + (offsets[i] as number))
  })
  return out
}

export const GGML = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, Q4_K: 12 } as const

/** ggml's quantize_row_q8_0_ref: d = amax / 127, q = round(x / d). */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 34)
  const view = new DataView(out.buffer)
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j] as number))
    const d = Math.fround(amax / 127)
    const id = d === 0 ? 0 : Math.fround(1 / d)
    view.setUint16(b * 34, f32ToF16Bits(d), true)
    for (let j = 0; j < 32; j++)
      view.setInt8(b * 34 + 2 + j, Math.round(Math.fround((x[b * 32 + j] as number) * id)))
  }
  return out
}

/** ggml's quantize_row_q4_0_ref: d = max / -8 (max: the value of largest magnitude). */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 18)
  const view = new DataView(out.buffer)
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0
    let max = 0
    for (let j = 0; j < 32; j++) {
      const v = x[b * 32 + j] as number
      if (Math.abs(v) > amax) {
        amax = Math.abs(v)
        max = v
      }
    }
    const d = Math.fround(max / -8)
    const id = d === 0 ? 0 : Math.fround(1 / d)
    view.setUint16(b * 18, f32ToF16Bits(d), true)
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(Math.fround((x[b * 32 + j] as number) * id) + 8.5))
      const q1 = Math.min(15, Math.trunc(Math.fround((x[b * 32 + 16 + j] as number) * id) + 8.5))
      view.setUint8(b * 18 + 2 + j, q0 | (q1 << 4))
    }
  }
  return out
}

/** Bytes of `x` stored as ggml `type` (F32, F16, Q8_0 or Q4_0). */
export function ggmlBytes(x: Float32Array, type: number): Uint8Array {
  if (type === GGML.F32) return fromFloat32(x, 'F32')
  if (type === GGML.F16) return fromFloat32(x, 'F16')
  if (type === GGML.Q8_0) return quantizeQ8_0(x)
  if (type === GGML.Q4_0) return quantizeQ4_0(x)
  throw new Error(`test writer cannot write ggml type ${type}`)
}

/**
 * The weights as llama.cpp's convert_hf_to_gguf.py writes a llama model: llama2.c's q/k are in
 * Meta order, which is what GGUF stores. 2-D weights use `type`, norms stay F32.
 */
export function ggufLlamaFile(
  w: Llama2cWeights,
  vocab: { pieces: string[]; scores: number[] },
  type: number = GGML.F32,
  extraMeta: readonly GgufMeta[] = [],
  dropMeta: readonly string[] = [],
  dropTensors: readonly string[] = [],
  replaceTensors: Readonly<Record<string, Omit<GgufTensorSpec, 'name'>>> = {},
): Uint8Array {
  const d = w.dims
  const { tokens, types } = sentencepieceSpelling(vocab.pieces)
  const all: GgufMeta[] = [
    { key: 'general.architecture', type: 'string', value: 'llama' },
    { key: 'general.name', type: 'string', value: 'test' },
    { key: 'llama.context_length', type: 'u32', value: d.seqLen },
    { key: 'llama.embedding_length', type: 'u32', value: d.dim },
    { key: 'llama.block_count', type: 'u32', value: d.nLayers },
    { key: 'llama.feed_forward_length', type: 'u32', value: d.hiddenDim },
    { key: 'llama.rope.dimension_count', type: 'u32', value: d.dim / d.nHeads },
    { key: 'llama.attention.head_count', type: 'u32', value: d.nHeads },
    { key: 'llama.attention.head_count_kv', type: 'u32', value: d.nKvHeads },
    { key: 'llama.attention.layer_norm_rms_epsilon', type: 'f32', value: 1e-5 },
    { key: 'llama.rope.freq_base', type: 'f32', value: 10000 },
    { key: 'general.file_type', type: 'u32', value: 0 },
    { key: 'tokenizer.ggml.model', type: 'string', value: 'llama' },
    { key: 'tokenizer.ggml.tokens', type: 'strings', value: tokens },
    { key: 'tokenizer.ggml.scores', type: 'f32s', value: vocab.scores },
    { key: 'tokenizer.ggml.token_type', type: 'i32s', value: types },
    { key: 'tokenizer.ggml.bos_token_id', type: 'u32', value: 1 },
    { key: 'tokenizer.ggml.eos_token_id', type: 'u32', value: 2 },
    { key: 'tokenizer.ggml.unknown_token_id', type: 'u32', value: 0 },
  ]
  const meta = [...all.filter((m) => !dropMeta.includes(m.key)), ...extraMeta]
  const t: GgufTensorSpec[] = []
  const mat = (name: string, x: Float32Array, rows: number, cols: number) =>
    t.push({ name, dims: [cols, rows], type, data: ggmlBytes(x, type) })
  const vec = (name: string, x: Float32Array) =>
    t.push({ name, dims: [x.length], type: GGML.F32, data: fromFloat32(x, 'F32') })
  const kvDim = (d.dim * d.nKvHeads) / d.nHeads
  mat('token_embd.weight', w.embed, d.vocabSize, d.dim)
  for (let l = 0; l < d.nLayers; l++) {
    vec(`blk.${l}.attn_norm.weight`, w.rmsAtt[l] as Float32Array)
    mat(`blk.${l}.attn_q.weight`, w.wq[l] as Float32Array, d.dim, d.dim)
    mat(`blk.${l}.attn_k.weight`, w.wk[l] as Float32Array, kvDim, d.dim)
    mat(`blk.${l}.attn_v.weight`, w.wv[l] as Float32Array, kvDim, d.dim)
    mat(`blk.${l}.attn_output.weight`, w.wo[l] as Float32Array, d.dim, d.dim)
    vec(`blk.${l}.ffn_norm.weight`, w.rmsFfn[l] as Float32Array)
    mat(`blk.${l}.ffn_gate.weight`, w.w1[l] as Float32Array, d.hiddenDim, d.dim)
    mat(`blk.${l}.ffn_down.weight`, w.w2[l] as Float32Array, d.dim, d.hiddenDim)
    mat(`blk.${l}.ffn_up.weight`, w.w3[l] as Float32Array, d.hiddenDim, d.dim)
  }
  vec('output_norm.weight', w.rmsFinal)
  if (w.wcls !== undefined) mat('output.weight', w.wcls, d.vocabSize, d.dim)
  const tensors = t
    .filter((x) => !dropTensors.includes(x.name))
    .map((x) => (Object.hasOwn(replaceTensors, x.name) ? { name: x.name, ...replaceTensors[x.name] } : x))
  return writeGguf(meta, tensors as GgufTensorSpec[])
}

/** The same weights as a Hugging Face Llama checkpoint: HF names, q/k permuted to rotate_half. */
export function hfTensors(
  w: Llama2cWeights,
): Array<{ name: string; dtype: 'F32'; shape: number[]; data: Uint8Array }> {
  const d = w.dims
  const kvDim = (d.dim * d.nKvHeads) / d.nHeads
  const out: Array<{ name: string; dtype: 'F32'; shape: number[]; data: Uint8Array }> = []
  const add = (name: string, shape: number[], x: Float32Array) =>
    out.push({ name, dtype: 'F32', shape, data: fromFloat32(x, 'F32') })
  add('model.embed_tokens.weight', [d.vocabSize, d.dim], w.embed)
  for (let l = 0; l < d.nLayers; l++) {
    const p = `model.layers.${l}`
    add(`${p}.input_layernorm.weight`, [d.dim], w.rmsAtt[l] as Float32Array)
    add(`${p}.self_attn.q_proj.weight`, [d.dim, d.dim], hfPermute(w.wq[l] as Float32Array, d.nHeads, d.dim))
    add(`${p}.self_attn.k_proj.weight`, [kvDim, d.dim], hfPermute(w.wk[l] as Float32Array, d.nKvHeads, d.dim))
    add(`${p}.self_attn.v_proj.weight`, [kvDim, d.dim], w.wv[l] as Float32Array)
    add(`${p}.self_attn.o_proj.weight`, [d.dim, d.dim], w.wo[l] as Float32Array)
    add(`${p}.post_attention_layernorm.weight`, [d.dim], w.rmsFfn[l] as Float32Array)
    add(`${p}.mlp.gate_proj.weight`, [d.hiddenDim, d.dim], w.w1[l] as Float32Array)
    add(`${p}.mlp.up_proj.weight`, [d.hiddenDim, d.dim], w.w3[l] as Float32Array)
    add(`${p}.mlp.down_proj.weight`, [d.dim, d.hiddenDim], w.w2[l] as Float32Array)
  }
  add('model.norm.weight', [d.dim], w.rmsFinal)
  if (w.wcls !== undefined) add('lm_head.weight', [d.vocabSize, d.dim], w.wcls)
  return out
}

/** HF config.json for these weights, as transformers writes it for a llama2.c-trained model. */
export function hfConfigJson(d: Llama2cDims, tied: boolean): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_act: 'silu',
    hidden_size: d.dim,
    intermediate_size: d.hiddenDim,
    num_hidden_layers: d.nLayers,
    num_attention_heads: d.nHeads,
    num_key_value_heads: d.nKvHeads,
    vocab_size: d.vocabSize,
    max_position_embeddings: d.seqLen,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: tied,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
  }
}
