import { ModelConfigError } from '../errors.js'

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
  /** Absent for float weights; present when the linear projections are stored as int4. */
  readonly quantization?: WeightQuantization
}

/**
 * int4 linear weights (see quant/int4.ts): every q/k/v/o/gate/up/down projection is stored as
 * `X.weight.qweight` + `X.weight.scales` instead of `X.weight`, and run with MatMulNBits. In
 * config.json it is `quantization_config: {quant_method: "butterfly_int4", bits: 4,
 * block_size: 32, symmetric: true, lm_head: false}`.
 */
export interface WeightQuantization {
  readonly method: 'int4'
  readonly bits: 4
  /** Weights per scale along the input dimension; a power of two from 16 to 256. */
  readonly blockSize: number
  /** The untied LM head is int4 too (a tied head is the embedding table and stays float). */
  readonly lmHead: boolean
}

/** quant_method we write and accept in config.json. */
export const INT4_QUANT_METHOD = 'butterfly_int4'
const QUANT_BLOCK_SIZES: readonly number[] = [16, 32, 64, 128, 256]

const ARCHITECTURES: readonly Architecture[] = ['llama', 'mistral', 'qwen2', 'smollm']

const HF_ARCHITECTURE: Readonly<Record<Architecture, string>> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  // SmolLM checkpoints are Llama models; only model_type keeps them apart on a round trip.
  smollm: 'LlamaForCausalLM',
}

/** Hugging Face spelling of each field, so every error names what the user sees in config.json. */
const HF_NAME: Readonly<Record<keyof ModelConfig, string>> = {
  architecture: 'model_type',
  hiddenSize: 'hidden_size',
  numLayers: 'num_hidden_layers',
  numHeads: 'num_attention_heads',
  numKvHeads: 'num_key_value_heads',
  headDim: 'head_dim',
  intermediateSize: 'intermediate_size',
  vocabSize: 'vocab_size',
  ropeTheta: 'rope_theta',
  rmsNormEps: 'rms_norm_eps',
  tieWordEmbeddings: 'tie_word_embeddings',
  maxContext: 'max_position_embeddings',
  attentionBias: 'attention_bias',
  bosTokenId: 'bos_token_id',
  eosTokenId: 'eos_token_id',
  quantization: 'quantization_config',
}

/** Upper bounds that catch corrupt or hostile configs before they size any allocation. */
const SIZE_CAPS = {
  hiddenSize: 65_536,
  numLayers: 1024,
  numHeads: 65_536,
  numKvHeads: 65_536,
  headDim: 65_536,
  intermediateSize: 1_048_576,
  vocabSize: 1_048_576,
  maxContext: 1_048_576,
} as const satisfies Partial<Record<keyof ModelConfig, number>>

/** Reads a Hugging Face config.json; `source` names the file in every error. */
export function parseModelConfig(json: unknown, source = 'config.json'): ModelConfig {
  const fail = (field: string, msg: string) => new ModelConfigError(`${source}: ${field} ${msg}`)
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelConfigError(`${source}: expected a JSON object, got ${describe(json)}`)
  }
  const raw = json as Record<string, unknown>
  // null means "use the default" in many real checkpoints (e.g. head_dim: null).
  const get = (field: string): unknown => (Object.hasOwn(raw, field) ? (raw[field] ?? undefined) : undefined)
  const num = (field: string, fallback?: number): number => {
    const v = get(field)
    if (v === undefined && fallback !== undefined) return fallback
    if (typeof v !== 'number') throw fail(field, `must be a number, got ${describe(v)}`)
    return v
  }
  const bool = (field: string, fallback: boolean): boolean => {
    const v = get(field)
    if (v === undefined) return fallback
    if (typeof v !== 'boolean') throw fail(field, `must be a boolean, got ${describe(v)}`)
    return v
  }
  const tokenId = (field: string): number | undefined => {
    let v = get(field)
    if (Array.isArray(v)) {
      if (v.length === 0) throw fail(field, 'is an empty array')
      v = v[0]
    }
    if (v !== undefined && typeof v !== 'number') throw fail(field, `must be a number, got ${describe(v)}`)
    return v
  }

  const modelType = get('model_type')
  if (modelType === undefined) throw fail('model_type', 'is missing')
  if (typeof modelType !== 'string' || !(ARCHITECTURES as readonly string[]).includes(modelType)) {
    throw fail('model_type', `${describe(modelType)} is unsupported (supported: ${ARCHITECTURES.join(', ')})`)
  }
  const architecture = modelType as Architecture
  const hiddenAct = get('hidden_act')
  if (hiddenAct !== undefined && hiddenAct !== 'silu') {
    throw fail('hidden_act', `${describe(hiddenAct)} is unsupported (only silu)`)
  }
  if (get('rope_scaling') !== undefined) {
    throw fail('rope_scaling', `${describe(get('rope_scaling'))} is unsupported (only plain RoPE)`)
  }

  const hiddenSize = num('hidden_size')
  const numHeads = num('num_attention_heads')
  if (get('head_dim') === undefined && Number.isInteger(numHeads) && numHeads > 0 && hiddenSize % numHeads) {
    throw fail(
      'head_dim',
      `is absent and hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`,
    )
  }
  let maxContext = num('max_position_embeddings')
  // Full attention over at most `window` tokens equals sliding-window attention, so a sliding-window
  // model (Mistral v0.1) is served exactly by capping the context at its window.
  const window = get('sliding_window')
  // transformers defaults use_sliding_window to false for qwen2; Mistral has no such switch.
  if (window !== undefined && bool('use_sliding_window', architecture !== 'qwen2')) {
    if (typeof window !== 'number' || !Number.isSafeInteger(window) || window <= 0) {
      throw fail('sliding_window', `must be a positive integer or null, got ${describe(window)}`)
    }
    maxContext = Math.min(maxContext, window)
  }

  const config: ModelConfig = {
    architecture,
    hiddenSize,
    numLayers: num('num_hidden_layers'),
    numHeads,
    numKvHeads: num('num_key_value_heads', numHeads),
    headDim: num('head_dim', hiddenSize / numHeads),
    intermediateSize: num('intermediate_size'),
    vocabSize: num('vocab_size'),
    ropeTheta: num('rope_theta', ropeThetaFromParameters(get('rope_parameters'), fail)),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    tieWordEmbeddings: bool('tie_word_embeddings', false),
    maxContext,
    attentionBias: bool('attention_bias', architecture === 'qwen2'),
    bosTokenId: tokenId('bos_token_id'),
    eosTokenId: tokenId('eos_token_id'),
  }
  const quantization = parseQuantization(get('quantization_config'), fail)
  return validateModelConfig(quantization ? { ...config, quantization } : config, source)
}

/**
 * Only our own int4 format is accepted: a GPTQ, AWQ or bitsandbytes checkpoint stores other
 * tensors in other layouts, and loading it as if it were float would only fail later and worse.
 */
function parseQuantization(
  value: unknown,
  fail: (field: string, msg: string) => Error,
): WeightQuantization | undefined {
  if (value === undefined) return undefined
  const field = 'quantization_config'
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fail(field, `must be an object, got ${describe(value)}`)
  }
  const q = value as Record<string, unknown>
  const method = q.quant_method
  if (method !== INT4_QUANT_METHOD) {
    throw fail(
      field,
      `quant_method ${describe(method)} is unsupported (only ${JSON.stringify(INT4_QUANT_METHOD)}; re-import the float checkpoint with --dtype int4)`,
    )
  }
  if (q.bits !== 4) throw fail(field, `bits must be 4, got ${describe(q.bits)}`)
  const blockSize = q.block_size ?? 32
  if (typeof blockSize !== 'number' || !QUANT_BLOCK_SIZES.includes(blockSize)) {
    throw fail(field, `block_size must be one of ${QUANT_BLOCK_SIZES.join(', ')}, got ${describe(blockSize)}`)
  }
  if (q.symmetric !== undefined && q.symmetric !== true) {
    throw fail(field, `symmetric must be true (zero points are not supported), got ${describe(q.symmetric)}`)
  }
  const lmHead = q.lm_head ?? false
  if (typeof lmHead !== 'boolean') throw fail(field, `lm_head must be a boolean, got ${describe(lmHead)}`)
  return { method: 'int4', bits: 4, blockSize, lmHead }
}

/**
 * Newer transformers releases move rope_theta into rope_parameters; honour it, and refuse any
 * rope_type other than the plain one rather than silently rotating wrongly.
 */
function ropeThetaFromParameters(value: unknown, fail: (field: string, msg: string) => Error): number {
  if (value === undefined) return 10_000
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fail('rope_parameters', `must be an object, got ${describe(value)}`)
  }
  const params = value as Record<string, unknown>
  const type = params.rope_type ?? params.type
  if (type !== undefined && type !== 'default') {
    throw fail('rope_parameters', `rope_type ${describe(type)} is unsupported (only default)`)
  }
  const theta = params.rope_theta ?? 10_000
  if (typeof theta !== 'number')
    throw fail('rope_parameters', `rope_theta must be a number, got ${describe(theta)}`)
  return theta
}

/** Checks every invariant the graph builder relies on; returns the config unchanged. */
export function validateModelConfig(config: ModelConfig, source = 'model config'): ModelConfig {
  const fail = (key: keyof ModelConfig, msg: string) =>
    new ModelConfigError(`${source}: ${HF_NAME[key]} ${msg}, got ${describe(config[key])}`)
  if (typeof config !== 'object' || config === null) {
    throw new ModelConfigError(`${source}: expected a config object, got ${describe(config)}`)
  }
  if (!ARCHITECTURES.includes(config.architecture)) {
    throw fail('architecture', `must be one of ${ARCHITECTURES.join(', ')}`)
  }
  for (const [key, cap] of Object.entries(SIZE_CAPS) as Array<[keyof typeof SIZE_CAPS, number]>) {
    const v = config[key]
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw fail(key, 'must be a positive integer')
    if (v > cap) throw fail(key, `must be at most ${cap}`)
  }
  if (config.numHeads % config.numKvHeads !== 0) {
    throw fail('numKvHeads', `must divide num_attention_heads (${config.numHeads})`)
  }
  if (config.headDim % 2 !== 0) throw fail('headDim', 'must be even for rotary embeddings')
  const { ropeTheta, rmsNormEps } = config
  if (typeof ropeTheta !== 'number' || !Number.isFinite(ropeTheta) || ropeTheta <= 0) {
    throw fail('ropeTheta', 'must be a positive finite number')
  }
  if (typeof rmsNormEps !== 'number' || !(rmsNormEps > 0 && rmsNormEps < 1)) {
    throw fail('rmsNormEps', 'must be a number in (0, 1)')
  }
  for (const key of ['tieWordEmbeddings', 'attentionBias'] as const) {
    if (typeof config[key] !== 'boolean') throw fail(key, 'must be a boolean')
  }
  for (const key of ['bosTokenId', 'eosTokenId'] as const) {
    const id = config[key]
    if (id === undefined) continue
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= config.vocabSize) {
      throw fail(key, `must be an integer token id below vocab_size (${config.vocabSize})`)
    }
  }
  const q = config.quantization
  if (q !== undefined) {
    const ok =
      typeof q === 'object' &&
      q !== null &&
      q.method === 'int4' &&
      q.bits === 4 &&
      QUANT_BLOCK_SIZES.includes(q.blockSize) &&
      typeof q.lmHead === 'boolean'
    if (!ok) throw fail('quantization', `must be {method: 'int4', bits: 4, blockSize, lmHead}`)
  }
  return config
}

/** Hugging Face style config.json; parseModelConfig(modelConfigToJson(c)) deep-equals c. */
export function modelConfigToJson(config: ModelConfig): Record<string, unknown> {
  const c = validateModelConfig(config)
  const json: Record<string, unknown> = {
    architectures: [HF_ARCHITECTURE[c.architecture]],
    model_type: c.architecture,
    hidden_act: 'silu',
    hidden_size: c.hiddenSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    intermediate_size: c.intermediateSize,
    vocab_size: c.vocabSize,
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.rmsNormEps,
    tie_word_embeddings: c.tieWordEmbeddings,
    max_position_embeddings: c.maxContext,
    attention_bias: c.attentionBias,
    rope_scaling: null,
  }
  if (c.bosTokenId !== undefined) json.bos_token_id = c.bosTokenId
  if (c.eosTokenId !== undefined) json.eos_token_id = c.eosTokenId
  if (c.quantization !== undefined) {
    json.quantization_config = {
      quant_method: INT4_QUANT_METHOD,
      bits: c.quantization.bits,
      block_size: c.quantization.blockSize,
      symmetric: true,
      lm_head: c.quantization.lmHead,
    }
  }
  return json
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing'
  if (typeof value === 'number') return String(value)
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
