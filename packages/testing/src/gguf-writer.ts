/**
 * Test-only GGUF writer, after llama.cpp's gguf-py GGUFWriter, with ggml's reference Q8_0 and
 * Q4_0 quantisers, and the llama-architecture file llama.cpp's converter writes for known weights.
 */
import { f32ToF16Bits, fromFloat32 } from '@butterfly/core'
import { sentencepieceSpelling } from './format-writers.js'
import type { Llama2cWeights } from './llama2c-reference.js'

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
  // Chunks, not one number[]: a real vocabulary's header is tens of megabytes.
  const chunks: Uint8Array[] = []
  let headLength = 0
  const bytes = (b: Uint8Array) => {
    chunks.push(b)
    headLength += b.byteLength
  }
  const byte = (v: number) => bytes(Uint8Array.of(v))
  const u32 = (v: number) => bytes(new Uint8Array(Uint32Array.of(v).buffer))
  const u64 = (v: number) => {
    const b = new Uint8Array(8)
    const view = new DataView(b.buffer)
    view.setUint32(0, v % 2 ** 32, true)
    view.setUint32(4, Math.floor(v / 2 ** 32), true)
    bytes(b)
  }
  const utf8 = new TextEncoder()
  const str = (s: string) => {
    const b = utf8.encode(s)
    u64(b.byteLength)
    bytes(b)
  }
  bytes(utf8.encode('GGUF'))
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
        bytes(stringArray(m.value))
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
        byte(m.value ? 1 : 0)
        break
      default:
        u32(TYPE_IDS[m.type])
        if (m.type === 'u32') u32(m.value)
        else if (m.type === 'u8') byte(m.value)
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
  const headBytes = Math.ceil(headLength / alignment) * alignment
  const out = new Uint8Array(headBytes + offset)
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.byteLength
  }
  tensors.forEach((t, i) => {
    out.set(t.data, headBytes + (offsets[i] as number))
  })
  return out
}

/** GGUF strings back to back (u64 length, UTF-8 bytes) in one buffer. */
function stringArray(values: readonly string[]): Uint8Array {
  const utf8 = new TextEncoder()
  let capacity = 0
  for (const v of values) capacity += 8 + 3 * v.length
  const out = new Uint8Array(capacity)
  const view = new DataView(out.buffer)
  let at = 0
  for (const v of values) {
    const { written } = utf8.encodeInto(v, out.subarray(at + 8))
    view.setUint32(at, written, true)
    at += 8 + written
  }
  return out.subarray(0, at)
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
