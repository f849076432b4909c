/**
 * Test-only: the GGUF file llama.cpp's convert_hf_to_gguf.py writes for a Hugging Face checkpoint
 * of any family Butterfly runs, given its ModelConfig and its weights in HF layout. Written from
 * the converter's source (conversion/llama.py, qwen.py, phi.py, gemma.py and base.py of the
 * llama.cpp release node-llama-cpp bundles), independently of core's GGUF importer.
 */
import { fromFloat32, type ModelConfig } from '@butterfly/core'
import { sentencepieceSpelling, testVocab } from './format-writers.js'
import { GGML, type GgufMeta, type GgufTensorSpec, ggmlBytes, writeGguf } from './gguf-writer.js'

/** llama.cpp's architecture name for each family (Mistral and SmolLM convert as llama). */
const GGUF_ARCH: Readonly<Record<ModelConfig['architecture'], string>> = {
  llama: 'llama',
  mistral: 'llama',
  smollm: 'llama',
  qwen2: 'qwen2',
  qwen3: 'qwen3',
  phi3: 'phi3',
  gemma3: 'gemma3',
}

/** The test vocabulary padded with plain pieces to `size` tokens (ids 1, 2 are <s>, </s>). */
export function paddedTestVocab(size: number): { pieces: string[]; scores: number[] } {
  const { pieces, scores } = testVocab()
  if (size < pieces.length) throw new Error(`vocab size ${size} is below the test vocab's ${pieces.length}`)
  while (pieces.length < size) {
    pieces.push(`x${pieces.length}`)
    scores.push(-2000 - pieces.length)
  }
  return { pieces, scores }
}

/**
 * convert_hf_to_gguf.py's LlamaModel.permute: HF's rotate_half rows back into Meta's interleaved
 * order, `w.reshape(heads, 2, d/2, cols).swapaxes(1, 2)`. Only the llama arch stores this.
 */
export function metaPermute(w: Float32Array, heads: number, cols: number): Float32Array {
  const half = w.length / cols / heads / 2
  const out = new Float32Array(w.length)
  for (let h = 0; h < heads; h++)
    for (let a = 0; a < 2; a++)
      for (let b = 0; b < half; b++) {
        const src = ((h * 2 + a) * half + b) * cols
        const dst = ((h * half + b) * 2 + a) * cols
        out.set(w.subarray(src, src + cols), dst)
      }
  return out
}

/**
 * The converter's Llama 3 `rope_freqs.weight` (LlamaModel.generate_extra_tensors): per-dimension
 * divisors of the inverse frequencies, computed in float32 as torch does there.
 */
export function llama3RopeFreqs(
  headDim: number,
  base: number,
  s: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalContext: number },
): Float32Array {
  const f = Math.fround
  const lowWavelen = s.originalContext / s.lowFreqFactor
  const highWavelen = s.originalContext / s.highFreqFactor
  const out = new Float32Array(headDim / 2)
  for (let i = 0; i < headDim / 2; i++) {
    const freq = f(1 / f(f(base) ** f((2 * i) / headDim)))
    const wavelen = f((2 * Math.PI) / freq)
    if (wavelen < highWavelen) out[i] = 1
    else if (wavelen > lowWavelen) out[i] = s.factor
    else {
      const smooth = f(
        f(f(s.originalContext / wavelen) - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor),
      )
      out[i] = 1 / f(f(f(1 - smooth) / s.factor) + smooth)
    }
  }
  return out
}

export interface GgufModelOptions {
  /** ggml type of the 2-D weights (norms, biases and rope factors stay F32). */
  readonly type?: number
  readonly dropTensors?: readonly string[]
  readonly dropMeta?: readonly string[]
  readonly extraMeta?: readonly GgufMeta[]
}

/** A GGUF file of `config` with `weights` (HF names and layout, float32) and the test vocab. */
export function ggufModelFile(
  config: ModelConfig,
  weights: ReadonlyMap<string, Float32Array>,
  options: GgufModelOptions = {},
): Uint8Array {
  const arch = GGUF_ARCH[config.architecture]
  const type = options.type ?? GGML.F32
  const { hiddenSize: h, numHeads, numKvHeads, headDim } = config
  const get = (name: string): Float32Array => {
    const w = weights.get(name)
    if (w === undefined) throw new Error(`test weights lack ${name}`)
    return w
  }
  const gemma = config.architecture === 'gemma3'
  const vocab = paddedTestVocab(config.vocabSize)
  const { tokens, types } = sentencepieceSpelling(vocab.pieces)
  const u32 = (key: string, value: number): GgufMeta => ({ key: `${arch}.${key}`, type: 'u32', value })
  const f32 = (key: string, value: number): GgufMeta => ({ key: `${arch}.${key}`, type: 'f32', value })
  const meta: GgufMeta[] = [
    { key: 'general.architecture', type: 'string', value: arch },
    { key: 'general.name', type: 'string', value: 'test' },
    u32('block_count', config.numLayers),
    u32('context_length', config.maxContext),
    u32('embedding_length', h),
    u32('feed_forward_length', config.intermediateSize),
    u32('attention.head_count', numHeads),
    u32('attention.head_count_kv', numKvHeads),
    f32('rope.freq_base', config.ropeTheta),
    f32('attention.layer_norm_rms_epsilon', config.rmsNormEps),
    { key: 'general.file_type', type: 'u32', value: type === GGML.F32 ? 0 : type === GGML.F16 ? 1 : 7 },
  ]
  if (config.architecture !== 'phi3') {
    meta.push(u32('attention.key_length', headDim), u32('attention.value_length', headDim))
  }
  if (arch === 'llama') meta.push(u32('vocab_size', config.vocabSize), u32('rope.dimension_count', headDim))
  if (arch === 'phi3') {
    // Phi3MiniModel writes the window always, 0 for none (its mark for Phi-4).
    meta.push(u32('rope.dimension_count', config.rotaryDim ?? headDim))
    meta.push(u32('attention.sliding_window', config.slidingWindow ?? 0))
  }
  if (gemma) {
    if (config.slidingWindow !== undefined) meta.push(u32('attention.sliding_window', config.slidingWindow))
    if (config.localRopeTheta !== undefined) meta.push(f32('rope.freq_base_swa', config.localRopeTheta))
  }
  const s = config.ropeScaling
  if (s?.type === 'longrope') {
    // Phi3MiniModel: no scaling type, the original context and the attention factor.
    meta.push(
      u32('rope.scaling.original_context_length', s.originalContext),
      f32('rope.scaling.attn_factor', s.attentionFactor),
    )
  } else if (s?.type === 'linear') {
    meta.push(
      { key: `${arch}.rope.scaling.type`, type: 'string', value: 'linear' },
      f32('rope.scaling.factor', s.factor),
    )
  } else if (s?.type === 'yarn') {
    meta.push(
      { key: `${arch}.rope.scaling.type`, type: 'string', value: 'yarn' },
      f32('rope.scaling.factor', s.factor),
      u32('rope.scaling.original_context_length', s.originalContext),
      f32('rope.scaling.yarn_attn_factor', s.attentionFactor),
      f32('rope.scaling.yarn_beta_fast', s.betaFast),
      f32('rope.scaling.yarn_beta_slow', s.betaSlow),
    )
  }
  meta.push(
    { key: 'tokenizer.ggml.model', type: 'string', value: 'llama' },
    { key: 'tokenizer.ggml.pre', type: 'string', value: 'default' },
    { key: 'tokenizer.ggml.tokens', type: 'strings', value: tokens },
    { key: 'tokenizer.ggml.scores', type: 'f32s', value: vocab.scores },
    { key: 'tokenizer.ggml.token_type', type: 'i32s', value: types },
    { key: 'tokenizer.ggml.bos_token_id', type: 'u32', value: 1 },
    { key: 'tokenizer.ggml.eos_token_id', type: 'u32', value: 2 },
    { key: 'tokenizer.ggml.unknown_token_id', type: 'u32', value: 0 },
  )

  const t: GgufTensorSpec[] = []
  const mat = (name: string, x: Float32Array, rows: number) =>
    t.push({ name, dims: [x.length / rows, rows], type, data: ggmlBytes(x, type) })
  const vec = (name: string, x: Float32Array) =>
    t.push({ name, dims: [x.length], type: GGML.F32, data: fromFloat32(x, 'F32') })
  // Gemma3Model.norm_shift: the converter stores (1 + w) for every norm weight.
  const norm = (name: string, hf: string) => vec(name, gemma ? get(hf).map((v) => v + 1) : get(hf))
  const qDim = numHeads * headDim
  const kvDim = numKvHeads * headDim
  mat('token_embd.weight', get('model.embed_tokens.weight'), config.vocabSize)
  if (s?.type === 'llama3') vec('rope_freqs.weight', llama3RopeFreqs(headDim, config.ropeTheta, s))
  if (s?.type === 'longrope') {
    vec('rope_factors_long.weight', Float32Array.from(s.longFactor))
    vec('rope_factors_short.weight', Float32Array.from(s.shortFactor))
  }
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`
    const b = `blk.${l}`
    norm(`${b}.attn_norm.weight`, `${p}.input_layernorm.weight`)
    if (arch === 'phi3') mat(`${b}.attn_qkv.weight`, get(`${p}.self_attn.qkv_proj.weight`), qDim + 2 * kvDim)
    else {
      const q = get(`${p}.self_attn.q_proj.weight`)
      const k = get(`${p}.self_attn.k_proj.weight`)
      mat(`${b}.attn_q.weight`, arch === 'llama' ? metaPermute(q, numHeads, h) : q, qDim)
      mat(`${b}.attn_k.weight`, arch === 'llama' ? metaPermute(k, numKvHeads, h) : k, kvDim)
      mat(`${b}.attn_v.weight`, get(`${p}.self_attn.v_proj.weight`), kvDim)
    }
    if (config.attentionBias) {
      // LlamaModel permutes q/k biases with their weights.
      const heads = { q: numHeads, k: numKvHeads, v: 0 } as const
      for (const x of ['q', 'k', 'v'] as const) {
        const bias = get(`${p}.self_attn.${x}_proj.bias`)
        vec(`${b}.attn_${x}.bias`, arch === 'llama' && x !== 'v' ? metaPermute(bias, heads[x], 1) : bias)
      }
    }
    if (config.architecture === 'qwen3' || gemma) {
      norm(`${b}.attn_q_norm.weight`, `${p}.self_attn.q_norm.weight`)
      norm(`${b}.attn_k_norm.weight`, `${p}.self_attn.k_norm.weight`)
    }
    mat(`${b}.attn_output.weight`, get(`${p}.self_attn.o_proj.weight`), h)
    if (gemma) {
      norm(`${b}.post_attention_norm.weight`, `${p}.post_attention_layernorm.weight`)
      norm(`${b}.ffn_norm.weight`, `${p}.pre_feedforward_layernorm.weight`)
      norm(`${b}.post_ffw_norm.weight`, `${p}.post_feedforward_layernorm.weight`)
    } else norm(`${b}.ffn_norm.weight`, `${p}.post_attention_layernorm.weight`)
    if (arch === 'phi3')
      mat(`${b}.ffn_up.weight`, get(`${p}.mlp.gate_up_proj.weight`), 2 * config.intermediateSize)
    else {
      mat(`${b}.ffn_gate.weight`, get(`${p}.mlp.gate_proj.weight`), config.intermediateSize)
      mat(`${b}.ffn_up.weight`, get(`${p}.mlp.up_proj.weight`), config.intermediateSize)
    }
    mat(`${b}.ffn_down.weight`, get(`${p}.mlp.down_proj.weight`), h)
  }
  norm('output_norm.weight', 'model.norm.weight')
  if (!config.tieWordEmbeddings) mat('output.weight', get('lm_head.weight'), config.vocabSize)
  const drop = new Set(options.dropMeta ?? [])
  return writeGguf(
    [...meta.filter((m) => !drop.has(m.key)), ...(options.extraMeta ?? [])],
    t.filter((x) => !(options.dropTensors ?? []).includes(x.name)),
  )
}
