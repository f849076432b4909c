import { ModelConfigError } from '../errors.js'
import { architectureTraits, type LayerAttention, MODEL_TYPES } from './architecture.js'
import {
  describeConfigValue,
  INT4_QUANT_METHOD,
  type ModelConfig,
  QUANT_BLOCK_SIZES,
  type WeightQuantization,
} from './model-config.js'
import { parseRopeScaling } from './rope-scaling.js'
import { validateModelConfig } from './validate-model-config.js'

/** Reads a Hugging Face config.json; `source` names the file in every error. */
export function parseModelConfig(json: unknown, source = 'config.json'): ModelConfig {
  const fail = (field: string, msg: string) => new ModelConfigError(`${source}: ${field} ${msg}`)
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelConfigError(`${source}: expected a JSON object, got ${describeConfigValue(json)}`)
  }
  let raw = json as Record<string, unknown>
  // Gemma 3's multimodal checkpoints nest the language model's config; we serve the text part.
  if (raw.model_type === 'gemma3' && typeof raw.text_config === 'object' && raw.text_config !== null) {
    raw = { model_type: 'gemma3_text', ...(raw.text_config as Record<string, unknown>) }
  }
  // null means "use the default" in many real checkpoints (e.g. head_dim: null).
  const get = (field: string): unknown => (Object.hasOwn(raw, field) ? (raw[field] ?? undefined) : undefined)
  const num = (field: string, fallback?: number): number => {
    const v = get(field)
    if (v === undefined && fallback !== undefined) return fallback
    if (typeof v !== 'number') throw fail(field, `must be a number, got ${describeConfigValue(v)}`)
    return v
  }
  const bool = (field: string, fallback: boolean): boolean => {
    const v = get(field)
    if (v === undefined) return fallback
    if (typeof v !== 'boolean') throw fail(field, `must be a boolean, got ${describeConfigValue(v)}`)
    return v
  }
  const tokenIds = (field: string): number[] => {
    const v = get(field)
    const list = Array.isArray(v) ? v : v === undefined ? [] : [v]
    if (Array.isArray(v) && v.length === 0) throw fail(field, 'is an empty array')
    for (const id of list)
      if (typeof id !== 'number') throw fail(field, `must be a number, got ${describeConfigValue(id)}`)
    return list as number[]
  }

  const modelType = get('model_type')
  if (modelType === undefined) throw fail('model_type', 'is missing')
  const architecture = typeof modelType === 'string' ? MODEL_TYPES[modelType] : undefined
  if (architecture === undefined || !Object.hasOwn(MODEL_TYPES, modelType as string)) {
    throw fail(
      'model_type',
      `${describeConfigValue(modelType)} is unsupported (supported: ${Object.keys(MODEL_TYPES).join(', ')})`,
    )
  }
  const traits = architectureTraits(architecture)
  // Gemma names it hidden_activation; older Gemma configs carry a stale hidden_act beside it.
  const actField = get('hidden_activation') !== undefined ? 'hidden_activation' : 'hidden_act'
  const hiddenAct = get(actField)
  const wantAct = traits.activation === 'silu' ? ['silu'] : ['gelu_pytorch_tanh', 'gelu_tanh']
  if (hiddenAct !== undefined && !wantAct.includes(hiddenAct as string)) {
    throw fail(
      actField,
      `${describeConfigValue(hiddenAct)} is unsupported for ${modelType} (only ${wantAct.join(' or ')})`,
    )
  }

  const hiddenSize = num('hidden_size')
  const numHeads = num('num_attention_heads')
  if (get('head_dim') === undefined && Number.isInteger(numHeads) && numHeads > 0 && hiddenSize % numHeads) {
    throw fail(
      'head_dim',
      `is absent and hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`,
    )
  }
  const headDim = num('head_dim', hiddenSize / numHeads)
  const numLayers = num('num_hidden_layers')
  const maxContext = num('max_position_embeddings')
  const partial = num('partial_rotary_factor', 1)
  if (!(partial > 0 && partial <= 1)) throw fail('partial_rotary_factor', `must be in (0, 1], got ${partial}`)
  const rotaryDim = Math.round(headDim * partial)

  // rope_parameters (transformers v5) holds theta and scaling together; Gemma 3 keys it by layer type.
  let ropeParams = get('rope_parameters') as Record<string, unknown> | undefined
  let localParams: Record<string, unknown> | undefined
  if (
    ropeParams !== undefined &&
    (typeof ropeParams !== 'object' || ropeParams === null || Array.isArray(ropeParams))
  ) {
    throw fail('rope_parameters', `must be an object, got ${describeConfigValue(ropeParams)}`)
  }
  if (ropeParams?.full_attention !== undefined) {
    localParams = ropeParams.sliding_attention as Record<string, unknown> | undefined
    ropeParams = ropeParams.full_attention as Record<string, unknown>
  }
  const scalingField = get('rope_scaling') !== undefined ? 'rope_scaling' : 'rope_parameters'
  // Phi-3 keeps LongRoPE's original context at the top level (transformers reads it there).
  let scalingJson = get('rope_scaling') ?? ropeParams
  const topOriginal = get('original_max_position_embeddings')
  if (
    typeof scalingJson === 'object' &&
    scalingJson !== null &&
    ((scalingJson as Record<string, unknown>).rope_type ?? (scalingJson as Record<string, unknown>).type) ===
      'longrope' &&
    (scalingJson as Record<string, unknown>).original_max_position_embeddings === undefined &&
    topOriginal !== undefined
  ) {
    scalingJson = { ...scalingJson, original_max_position_embeddings: topOriginal }
  }
  const ropeScaling = parseRopeScaling(scalingJson, scalingField, maxContext, rotaryDim, fail)
  const paramTheta = (p: Record<string, unknown> | undefined, field: string): number | undefined => {
    const t = p?.rope_theta
    if (t !== undefined && typeof t !== 'number')
      throw fail(field, `rope_theta must be a number, got ${describeConfigValue(t)}`)
    return t
  }
  const ropeTheta = num('rope_theta', paramTheta(ropeParams, 'rope_parameters') ?? 10_000)

  // Sliding-window attention: which layers, and how many keys each sees (itself included).
  const window = get('sliding_window')
  let slidingWindow: number | undefined
  let layerTypes: LayerAttention[] | undefined
  // transformers defaults use_sliding_window to false for Qwen; Mistral, Phi-3 and Gemma have no switch.
  const qwen = architecture === 'qwen2' || architecture === 'qwen3'
  if (window !== undefined && bool('use_sliding_window', !qwen)) {
    if (typeof window !== 'number' || !Number.isSafeInteger(window) || window <= 0) {
      throw fail('sliding_window', `must be a positive integer or null, got ${describeConfigValue(window)}`)
    }
    slidingWindow = window
    const declared = get('layer_types')
    if (declared !== undefined) {
      if (!Array.isArray(declared) || declared.length !== numLayers) {
        throw fail('layer_types', `must list ${numLayers} layer types, got ${describeConfigValue(declared)}`)
      }
      layerTypes = declared.map((t) => {
        if (t === 'full_attention') return 'full'
        if (t === 'sliding_attention') return 'sliding'
        throw fail(
          'layer_types',
          `${describeConfigValue(t)} is unsupported (full_attention or sliding_attention)`,
        )
      })
    } else if (architecture === 'gemma3') {
      // Every sliding_window_pattern-th layer is global, the rest local (5 local : 1 global).
      const pattern = num('sliding_window_pattern', 6)
      if (!Number.isSafeInteger(pattern) || pattern < 1)
        throw fail('sliding_window_pattern', 'must be a positive integer')
      layerTypes = Array.from({ length: numLayers }, (_, i) => ((i + 1) % pattern === 0 ? 'full' : 'sliding'))
    } else if (qwen) {
      const from = num('max_window_layers', numLayers)
      layerTypes = Array.from({ length: numLayers }, (_, i) => (i >= from ? 'sliding' : 'full'))
    }
    if (layerTypes !== undefined && !layerTypes.includes('sliding')) {
      slidingWindow = undefined
      layerTypes = undefined
    } else if (layerTypes?.every((t) => t === 'sliding')) layerTypes = undefined
  }

  const eos = tokenIds('eos_token_id')
  const bos = tokenIds('bos_token_id')
  const config: Mutable<ModelConfig> = {
    architecture,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads: num('num_key_value_heads', numHeads),
    headDim,
    intermediateSize: num('intermediate_size'),
    vocabSize: num('vocab_size'),
    ropeTheta,
    rmsNormEps: num('rms_norm_eps', 1e-6),
    tieWordEmbeddings: bool('tie_word_embeddings', traits.defaultTiedEmbeddings),
    maxContext,
    attentionBias: bool('attention_bias', traits.defaultAttentionBias),
    bosTokenId: bos[0],
    eosTokenId: eos[0],
  }
  if (eos.length > 1) config.eosTokenIds = eos
  if (ropeScaling !== undefined) config.ropeScaling = ropeScaling
  if (rotaryDim !== headDim) config.rotaryDim = rotaryDim
  if (slidingWindow !== undefined) config.slidingWindow = slidingWindow
  if (layerTypes !== undefined) config.layerTypes = layerTypes
  if (architecture === 'gemma3') {
    const local = get('rope_local_base_freq') ?? paramTheta(localParams, 'rope_parameters') ?? 10_000
    if (typeof local !== 'number')
      throw fail('rope_local_base_freq', `must be a number, got ${describeConfigValue(local)}`)
    config.localRopeTheta = local
    const scalar = num('query_pre_attn_scalar', headDim)
    if (scalar !== headDim) config.queryPreAttnScalar = scalar
    for (const cap of ['attn_logit_softcapping', 'final_logit_softcapping']) {
      if (get(cap) !== undefined)
        throw fail(cap, `${describeConfigValue(get(cap))} is unsupported (Gemma 2 soft-capping)`)
    }
  }
  const quantization = parseQuantization(get('quantization_config'), fail)
  if (quantization) config.quantization = quantization
  return validateModelConfig(config, source)
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

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
    throw fail(field, `must be an object, got ${describeConfigValue(value)}`)
  }
  const q = value as Record<string, unknown>
  const method = q.quant_method
  if (method !== INT4_QUANT_METHOD) {
    throw fail(
      field,
      `quant_method ${describeConfigValue(method)} is unsupported (only ${JSON.stringify(INT4_QUANT_METHOD)}; re-import the float checkpoint with --dtype int4)`,
    )
  }
  if (q.bits !== 4) throw fail(field, `bits must be 4, got ${describeConfigValue(q.bits)}`)
  const blockSize = q.block_size ?? 32
  if (typeof blockSize !== 'number' || !QUANT_BLOCK_SIZES.includes(blockSize)) {
    throw fail(
      field,
      `block_size must be one of ${QUANT_BLOCK_SIZES.join(', ')}, got ${describeConfigValue(blockSize)}`,
    )
  }
  if (q.symmetric !== undefined && q.symmetric !== true) {
    throw fail(
      field,
      `symmetric must be true (zero points are not supported), got ${describeConfigValue(q.symmetric)}`,
    )
  }
  const lmHead = q.lm_head ?? false
  if (typeof lmHead !== 'boolean')
    throw fail(field, `lm_head must be a boolean, got ${describeConfigValue(lmHead)}`)
  return { method: 'int4', bits: 4, blockSize, lmHead }
}
