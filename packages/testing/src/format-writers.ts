/**
 * Test-only writers for the foreign formats the importers read: llama2.c model.bin (legacy and
 * version 1) and tokenizer.bin, and the Hugging Face layout of the same weights (GGUF is in
 * gguf-writer.ts). Each follows the format's own writer (llama2.c export.py,
 * llama.cpp's gguf-py and ggml quantize_row_*_ref), not the import code.
 */
import { fromFloat32 } from '@butterfly/core'
import type { Llama2cDims, Llama2cWeights } from './llama2c-reference.js'
import { mulberry32 as rng } from './rng.js'

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
