import { ModelConfigError } from '../errors.js'
import type { Architecture, LayerAttention } from '../model/architecture.js'
import type { ModelConfig } from '../model/model-config.js'
import type { RopeScaling } from '../model/rope-scaling.js'
import { validateModelConfig } from '../model/validate-model-config.js'
import type { MetadataReader } from './gguf-metadata.js'
import type { GgufFile } from './gguf-reader.js'

/**
 * llama.cpp's architecture names we import, and the family each becomes. Mistral and SmolLM
 * convert as `llama` (same graph, no sliding window in llama.cpp's llama arch), so they import as
 * llama.
 */
export const GGUF_ARCHITECTURES: Readonly<Record<string, Architecture>> = {
  llama: 'llama',
  qwen2: 'qwen2',
  qwen3: 'qwen3',
  phi3: 'phi3',
  gemma3: 'gemma3',
}

/** What the tensors say about the config (read before the metadata is mapped). */
export interface GgufTensorFacts {
  readonly vocabSize: number
  readonly untiedHead: boolean
  readonly attentionBias: boolean
  /** rope_freqs.weight, read whole (the converter's baked Llama 3 scaling). */
  readonly ropeFreqs?: Float32Array | undefined
  /** rope_factors_long/short.weight (Phi-3 LongRoPE). */
  readonly ropeFactorsLong?: Float32Array | undefined
  readonly ropeFactorsShort?: Float32Array | undefined
}

/**
 * The ModelConfig a GGUF file's metadata describes, following what llama.cpp's hparams loader
 * reads for that arch (src/llama-model.cpp and src/models/<arch>.cpp) so a file means to us what
 * it means to llama.cpp. Every unsupported feature is refused by the key that asks for it.
 */
export function ggufModelConfig(file: GgufFile, meta: MetadataReader, facts: GgufTensorFacts): ModelConfig {
  const name = file.source.name
  const a = meta.string('general.architecture')
  const architecture = Object.hasOwn(GGUF_ARCHITECTURES, a) ? GGUF_ARCHITECTURES[a] : undefined
  if (architecture === undefined) {
    throw new ModelConfigError(
      `${name}: general.architecture "${a}" is not supported (supported: ${Object.keys(GGUF_ARCHITECTURES).join(', ')})`,
    )
  }
  const key = (k: string) => `${a}.${k}`
  const refuse = (k: string, what: string) => new ModelConfigError(`${name}: GGUF metadata ${k}: ${what}`)
  const experts = meta.optionalInt(key('expert_count'))
  if (experts !== undefined && experts > 0) {
    throw refuse(key('expert_count'), `${experts}: mixture-of-experts models are not supported`)
  }
  const softcap = meta.optionalNumber(key('final_logit_softcapping'))
  if (softcap !== undefined && softcap !== 0)
    throw refuse(key('final_logit_softcapping'), 'logit soft-capping is not supported')
  const hiddenSize = meta.int(key('embedding_length'))
  const numHeads = meta.int(key('attention.head_count'))
  if (numHeads === 0 || (hiddenSize % numHeads !== 0 && !meta.has(key('attention.key_length')))) {
    throw refuse(key('attention.head_count'), `${numHeads} does not divide embedding_length ${hiddenSize}`)
  }
  const headDim = meta.optionalInt(key('attention.key_length')) ?? hiddenSize / numHeads
  const valueLength = meta.optionalInt(key('attention.value_length'))
  if (valueLength !== undefined && valueLength !== headDim) {
    throw refuse(key('attention.value_length'), `${valueLength} differs from key_length ${headDim}`)
  }
  const ropeDims = meta.optionalInt(key('rope.dimension_count'))
  if (ropeDims !== undefined && ropeDims !== headDim && architecture === 'llama') {
    // llama.cpp itself refuses this for the llama arch ("invalid n_rot").
    throw refuse(key('rope.dimension_count'), `${ropeDims} (partial rotary) is not supported for llama`)
  }
  const numLayers = meta.int(key('block_count'))
  const maxContext = meta.int(key('context_length'))
  const ropeTheta = meta.optionalNumber(key('rope.freq_base')) ?? 10_000
  const ropeScaling = scaling(meta, a, maxContext, facts, refuse)
  const config: ModelConfig = {
    architecture,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads: meta.optionalInt(key('attention.head_count_kv')) ?? numHeads,
    headDim,
    intermediateSize: meta.int(key('feed_forward_length')),
    vocabSize: facts.vocabSize,
    ropeTheta,
    rmsNormEps: meta.number(key('attention.layer_norm_rms_epsilon')),
    tieWordEmbeddings: !facts.untiedHead,
    maxContext,
    attentionBias: facts.attentionBias,
    bosTokenId: meta.optionalInt('tokenizer.ggml.bos_token_id'),
    eosTokenId: meta.optionalInt('tokenizer.ggml.eos_token_id'),
    ...(ropeScaling === undefined ? {} : { ropeScaling }),
    ...(ropeDims !== undefined && ropeDims !== headDim ? { rotaryDim: ropeDims } : {}),
    ...window(meta, a, architecture, numLayers),
    // llama.cpp scales Gemma 3 scores by 1/sqrt(key_length), except the 62-layer 27B, which uses
    // hidden / heads (its query_pre_attn_scalar); absent means head_dim.
    ...(architecture === 'gemma3' && numLayers === 62 ? { queryPreAttnScalar: hiddenSize / numHeads } : {}),
  }
  return validateModelConfig(config, `${name} (GGUF metadata as a config)`)
}

type Refuse = (key: string, what: string) => ModelConfigError

function scaling(
  meta: MetadataReader,
  a: string,
  maxContext: number,
  facts: GgufTensorFacts,
  refuse: Refuse,
): RopeScaling | undefined {
  const typeKey = `${a}.rope.scaling.type`
  const type = meta.optionalString(typeKey)
  const factor =
    meta.optionalNumber(`${a}.rope.scaling.factor`) ?? meta.optionalNumber(`${a}.rope.scale_linear`)
  const plain = type === undefined || type === 'none' || (type === 'linear' && (factor ?? 1) === 1)
  const { ropeFreqs, ropeFactorsLong: long, ropeFactorsShort: short } = facts
  if (long !== undefined || short !== undefined) {
    // Phi-3 LongRoPE: the converter writes both factor tensors and rope.scaling.attn_factor, no type.
    if (long === undefined || short === undefined || long.length !== short.length) {
      throw refuse(
        typeKey,
        'LongRoPE needs rope_factors_long.weight and rope_factors_short.weight of one length',
      )
    }
    if (!plain && type !== 'longrope') {
      throw refuse(typeKey, `${type} scaling on top of rope_factors_long/short is not supported`)
    }
    const originalContext = meta.optionalInt(`${a}.rope.scaling.original_context_length`) ?? maxContext
    const scale = maxContext / originalContext
    return {
      type: 'longrope',
      longFactor: [...long],
      shortFactor: [...short],
      originalContext,
      attentionFactor:
        meta.optionalNumber(`${a}.rope.scaling.attn_factor`) ??
        (scale <= 1 ? 1 : Math.sqrt(1 + Math.log(scale) / Math.log(originalContext))),
    }
  }
  if (ropeFreqs !== undefined) {
    if (type !== undefined && type !== 'none' && !(type === 'linear' && (factor ?? 1) === 1)) {
      throw refuse(typeKey, `${type} scaling on top of rope_freqs.weight is not supported`)
    }
    return { type: 'frequency_factors', factors: [...ropeFreqs] }
  }
  switch (type) {
    case undefined:
    case 'none':
      return undefined
    case 'linear':
      // llama.cpp's default type is linear; without a factor (or factor 1) it is plain RoPE.
      return factor === undefined || factor === 1 ? undefined : { type: 'linear', factor }
    case 'yarn': {
      if (factor === undefined) throw refuse(`${a}.rope.scaling.factor`, 'is missing (yarn needs it)')
      const ext = meta.optionalNumber(`${a}.rope.scaling.yarn_ext_factor`)
      if (ext !== undefined && ext !== 1 && ext >= 0)
        throw refuse(`${a}.rope.scaling.yarn_ext_factor`, `${ext} is not supported`)
      const logMul = meta.optionalNumber(`${a}.rope.scaling.yarn_log_multiplier`)
      if (logMul !== undefined && logMul !== 0)
        throw refuse(`${a}.rope.scaling.yarn_log_multiplier`, 'is not supported')
      const attentionFactor =
        meta.optionalNumber(`${a}.rope.scaling.yarn_attn_factor`) ??
        meta.optionalNumber(`${a}.rope.scaling.attn_factor`) ??
        (factor <= 1 ? 1 : 0.1 * Math.log(factor) + 1)
      return {
        type: 'yarn',
        factor,
        originalContext: meta.optionalInt(`${a}.rope.scaling.original_context_length`) ?? maxContext,
        betaFast: meta.optionalNumber(`${a}.rope.scaling.yarn_beta_fast`) ?? 32,
        betaSlow: meta.optionalNumber(`${a}.rope.scaling.yarn_beta_slow`) ?? 1,
        attentionFactor,
        truncate: true,
      }
    }
    default:
      throw refuse(
        typeKey,
        `RoPE scaling (${type}) is not supported (none, linear, yarn and rope_freqs.weight are)`,
      )
  }
}

/** The sliding window and which layers use it (Gemma 3: every `pattern`-th layer is full). */
function window(
  meta: MetadataReader,
  a: string,
  architecture: Architecture,
  numLayers: number,
): Pick<ModelConfig, 'slidingWindow' | 'layerTypes' | 'localRopeTheta'> {
  const size = meta.optionalInt(`${a}.attention.sliding_window`)
  if (size === undefined || size === 0) return {}
  if (architecture === 'phi3') return { slidingWindow: size }
  if (architecture !== 'gemma3') {
    throw new ModelConfigError(`${a}.attention.sliding_window: a sliding window is not supported for ${a}`)
  }
  const patternKey = `${a}.attention.sliding_window_pattern`
  const pattern = meta.optionalInt(patternKey) ?? 6
  if (pattern === 0) throw new ModelConfigError(`GGUF metadata ${patternKey} 0 is not supported`)
  const layerTypes: LayerAttention[] = []
  for (let l = 0; l < numLayers; l++) layerTypes.push(l % pattern < pattern - 1 ? 'sliding' : 'full')
  return {
    slidingWindow: size,
    layerTypes,
    // llama.cpp's default base of Gemma 3's sliding layers when the file does not name one.
    localRopeTheta: meta.optionalNumber(`${a}.rope.freq_base_swa`) ?? 10_000,
  }
}
