import { ModelConfigError } from '../errors.js'
import { ARCHITECTURES } from './architecture.js'
import { describeConfigValue, type ModelConfig, QUANT_BLOCK_SIZES } from './model-config.js'
import { ROPE_SCALING_TYPES } from './rope-scaling.js'

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
  eosTokenIds: 'eos_token_id',
  ropeScaling: 'rope_scaling',
  rotaryDim: 'partial_rotary_factor',
  slidingWindow: 'sliding_window',
  layerTypes: 'layer_types',
  localRopeTheta: 'rope_local_base_freq',
  queryPreAttnScalar: 'query_pre_attn_scalar',
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

/** Checks every invariant the graph builder relies on; returns the config unchanged. */
export function validateModelConfig(config: ModelConfig, source = 'model config'): ModelConfig {
  const fail = (key: keyof ModelConfig, msg: string) =>
    new ModelConfigError(`${source}: ${HF_NAME[key]} ${msg}, got ${describeConfigValue(config[key])}`)
  if (typeof config !== 'object' || config === null) {
    throw new ModelConfigError(`${source}: expected a config object, got ${describeConfigValue(config)}`)
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
  validateAttentionFields(config, fail)
  return config
}

/** The optional fields of newer families: rotary width, sliding windows, extra thetas, eos lists. */
function validateAttentionFields(
  config: ModelConfig,
  fail: (key: keyof ModelConfig, msg: string) => Error,
): void {
  const positiveInt = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v > 0
  const { rotaryDim, slidingWindow, layerTypes, localRopeTheta, queryPreAttnScalar, eosTokenIds } = config
  if (
    rotaryDim !== undefined &&
    !(positiveInt(rotaryDim) && rotaryDim % 2 === 0 && rotaryDim <= config.headDim)
  ) {
    throw fail('rotaryDim', `must give an even rotary width of at most head_dim (${config.headDim})`)
  }
  if (slidingWindow !== undefined && !positiveInt(slidingWindow))
    throw fail('slidingWindow', 'must be a positive integer')
  if (layerTypes !== undefined) {
    const ok =
      Array.isArray(layerTypes) &&
      layerTypes.length === config.numLayers &&
      layerTypes.every((t) => t === 'full' || t === 'sliding')
    if (!ok || slidingWindow === undefined) {
      throw fail(
        'layerTypes',
        `must list 'full' or 'sliding' for each of ${config.numLayers} layers, with sliding_window set`,
      )
    }
  }
  for (const key of ['localRopeTheta', 'queryPreAttnScalar'] as const) {
    const v = key === 'localRopeTheta' ? localRopeTheta : queryPreAttnScalar
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) {
      throw fail(key, 'must be a positive finite number')
    }
  }
  if (eosTokenIds !== undefined) {
    const ok =
      Array.isArray(eosTokenIds) &&
      eosTokenIds.length > 0 &&
      eosTokenIds[0] === config.eosTokenId &&
      eosTokenIds.every((id) => Number.isInteger(id) && id >= 0 && id < config.vocabSize)
    if (!ok) throw fail('eosTokenIds', `must be token ids below vocab_size starting with eos_token_id`)
  }
  const s = config.ropeScaling
  if (s !== undefined) {
    const type: unknown = typeof s === 'object' && s !== null ? s.type : undefined
    if (!(ROPE_SCALING_TYPES as readonly unknown[]).includes(type)) {
      throw fail('ropeScaling', `must be one of ${ROPE_SCALING_TYPES.join(', ')}`)
    }
  }
}
