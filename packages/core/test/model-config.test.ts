import { describe, expect, it } from 'vitest'
import { ModelConfigError } from '../src/errors.js'
import { attentionScaleOf, layerAttention, type ModelConfig, rotaryDimOf } from '../src/model/model-config.js'
import { modelConfigToJson } from '../src/model/model-config-json.js'
import { parseModelConfig } from '../src/model/parse-model-config.js'
import { validateModelConfig } from '../src/model/validate-model-config.js'

// Trimmed copies of real Hugging Face config.json files (unused fields kept where they matter).
const SMOLLM_135M = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 0,
  eos_token_id: 0,
  hidden_act: 'silu',
  hidden_size: 576,
  initializer_range: 0.02,
  intermediate_size: 1536,
  max_position_embeddings: 2048,
  model_type: 'llama',
  num_attention_heads: 9,
  num_hidden_layers: 30,
  num_key_value_heads: 3,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  rope_theta: 10000.0,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  use_cache: true,
  vocab_size: 49152,
}

const QWEN2_05B_INSTRUCT = {
  architectures: ['Qwen2ForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: [151645, 151643],
  hidden_act: 'silu',
  hidden_size: 896,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 24,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  use_sliding_window: false,
  vocab_size: 151936,
}

const MISTRAL_7B_V01 = {
  architectures: ['MistralForCausalLM'],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 4096,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: 'mistral',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  sliding_window: 4096,
  tie_word_embeddings: false,
  vocab_size: 32000,
}

// Real config.json files as published on the Hugging Face hub (fields we do not read trimmed).
const LLAMA_32_1B = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: 128001,
  head_dim: 64,
  hidden_act: 'silu',
  hidden_size: 2048,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 32.0,
    high_freq_factor: 4.0,
    low_freq_factor: 1.0,
    original_max_position_embeddings: 8192,
    rope_type: 'llama3',
  },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  use_cache: true,
  vocab_size: 128256,
}

const QWEN3_06B = {
  architectures: ['Qwen3ForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: 'silu',
  hidden_size: 1024,
  intermediate_size: 3072,
  max_position_embeddings: 40960,
  max_window_layers: 28,
  model_type: 'qwen3',
  num_attention_heads: 16,
  num_hidden_layers: 28,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: true,
  use_sliding_window: false,
  vocab_size: 151936,
}

const PHI3_MINI_4K = {
  architectures: ['Phi3ForCausalLM'],
  attention_bias: false,
  bos_token_id: 1,
  eos_token_id: 32000,
  hidden_act: 'silu',
  hidden_size: 3072,
  intermediate_size: 8192,
  max_position_embeddings: 4096,
  model_type: 'phi3',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 32,
  original_max_position_embeddings: 4096,
  pad_token_id: 32000,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  rope_theta: 10000.0,
  sliding_window: 2047,
  tie_word_embeddings: false,
  vocab_size: 32064,
}

// Phi-4-mini-instruct's shape; its 48 short/long factors are abbreviated to ramps of the right length.
const PHI4_MINI = {
  architectures: ['Phi3ForCausalLM'],
  attention_bias: false,
  bos_token_id: 199999,
  eos_token_id: 199999,
  hidden_act: 'silu',
  hidden_size: 3072,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  model_type: 'phi3',
  num_attention_heads: 24,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  original_max_position_embeddings: 4096,
  pad_token_id: 199999,
  partial_rotary_factor: 0.75,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    long_factor: Array.from({ length: 48 }, (_, i) => 1 + i),
    short_factor: Array.from({ length: 48 }, (_, i) => 1 + i / 100),
    type: 'longrope',
  },
  rope_theta: 10000.0,
  sliding_window: 262144,
  tie_word_embeddings: true,
  vocab_size: 200064,
}

const GEMMA3_1B_IT = {
  architectures: ['Gemma3ForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  attn_logit_softcapping: null,
  bos_token_id: 2,
  cache_implementation: 'hybrid',
  eos_token_id: [1, 106],
  final_logit_softcapping: null,
  head_dim: 256,
  hidden_activation: 'gelu_pytorch_tanh',
  hidden_size: 1152,
  intermediate_size: 6912,
  max_position_embeddings: 32768,
  model_type: 'gemma3_text',
  num_attention_heads: 4,
  num_hidden_layers: 26,
  num_key_value_heads: 1,
  pad_token_id: 0,
  query_pre_attn_scalar: 256,
  rms_norm_eps: 1e-6,
  rope_local_base_freq: 10000,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: 512,
  sliding_window_pattern: 6,
  torch_dtype: 'bfloat16',
  use_cache: true,
  vocab_size: 262144,
}

/** The bare minimum; everything else takes its default. */
const MINIMAL = {
  model_type: 'llama',
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 128,
  vocab_size: 256,
  max_position_embeddings: 128,
}

describe('parseModelConfig', () => {
  it('reads SmolLM-135M (model_type llama)', () => {
    expect(parseModelConfig(SMOLLM_135M)).toEqual({
      architecture: 'llama',
      hiddenSize: 576,
      numLayers: 30,
      numHeads: 9,
      numKvHeads: 3,
      headDim: 64,
      intermediateSize: 1536,
      vocabSize: 49152,
      ropeTheta: 10000,
      rmsNormEps: 1e-5,
      tieWordEmbeddings: true,
      maxContext: 2048,
      attentionBias: false,
      bosTokenId: 0,
      eosTokenId: 0,
    } satisfies ModelConfig)
  })

  it('accepts model_type smollm as its own architecture', () => {
    expect(parseModelConfig({ ...SMOLLM_135M, model_type: 'smollm' }).architecture).toBe('smollm')
  })

  it('reads Qwen2: biases on by default, first eos of an array, sliding window switched off', () => {
    const c = parseModelConfig(QWEN2_05B_INSTRUCT)
    expect(c.architecture).toBe('qwen2')
    expect(c.attentionBias).toBe(true)
    expect(c.eosTokenId).toBe(151645)
    expect(c.bosTokenId).toBe(151643)
    expect(c.headDim).toBe(64)
    expect(c.ropeTheta).toBe(1_000_000)
    expect(c.maxContext).toBe(32768)
    expect(parseModelConfig({ ...QWEN2_05B_INSTRUCT, attention_bias: false }).attentionBias).toBe(false)
  })

  it('reads Mistral v0.1: every layer slides over 4096 keys, the context stays 32768', () => {
    const c = parseModelConfig(MISTRAL_7B_V01)
    expect(c.architecture).toBe('mistral')
    expect(c.maxContext).toBe(32768)
    expect(c.slidingWindow).toBe(4096)
    expect(c.layerTypes).toBeUndefined()
    expect(layerAttention(c, 0)).toBe('sliding')
    expect(layerAttention(c, 31)).toBe('sliding')
    expect(c.numKvHeads).toBe(8)
    expect(c.headDim).toBe(128)
    expect(c.attentionBias).toBe(false)
    const full = parseModelConfig({ ...MISTRAL_7B_V01, sliding_window: null })
    expect(full.maxContext).toBe(32768)
    expect(full.slidingWindow).toBeUndefined()
    expect(layerAttention(full, 0)).toBe('full')
  })

  it('reads Llama-3.2-1B: llama3 rope scaling, tied, explicit head_dim', () => {
    const c = parseModelConfig(LLAMA_32_1B)
    expect(c).toMatchObject({ architecture: 'llama', hiddenSize: 2048, numLayers: 16, headDim: 64 })
    expect(c).toMatchObject({ maxContext: 131072, ropeTheta: 500000, tieWordEmbeddings: true })
    expect(c.ropeScaling).toEqual({
      type: 'llama3',
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalContext: 8192,
    })
    expect(c.slidingWindow).toBeUndefined()
    expect(rotaryDimOf(c)).toBe(64)
    expect(parseModelConfig({ ...LLAMA_32_1B, eos_token_id: [128001, 128008, 128009] }).eosTokenIds).toEqual([
      128001, 128008, 128009,
    ])
  })

  it('reads Qwen3-0.6B: head_dim 128 != hidden / heads, no bias, no window', () => {
    const c = parseModelConfig(QWEN3_06B)
    expect(c).toMatchObject({ architecture: 'qwen3', hiddenSize: 1024, numHeads: 16, numKvHeads: 8 })
    expect(c).toMatchObject({
      headDim: 128,
      attentionBias: false,
      maxContext: 40960,
      tieWordEmbeddings: true,
    })
    expect(c.slidingWindow).toBeUndefined()
    expect(c.ropeScaling).toBeUndefined()
    expect(attentionScaleOf(c)).toBe(1 / Math.sqrt(128))
  })

  it('reads Phi-3-mini-4k: every layer slides over 2047 keys, untied, no partial rotary', () => {
    const c = parseModelConfig(PHI3_MINI_4K)
    expect(c).toMatchObject({ architecture: 'phi3', slidingWindow: 2047, maxContext: 4096, headDim: 96 })
    expect(c.layerTypes).toBeUndefined()
    expect(c.rotaryDim).toBeUndefined()
    expect(c.ropeScaling).toBeUndefined()
    expect(layerAttention(c, 7)).toBe('sliding')
  })

  it('reads Phi-4-mini: partial rotary 0.75 and LongRoPE with the top-level original context', () => {
    const c = parseModelConfig(PHI4_MINI)
    expect(c).toMatchObject({ architecture: 'phi3', headDim: 128, rotaryDim: 96, numKvHeads: 8 })
    const s = c.ropeScaling
    if (s?.type !== 'longrope') throw new Error(`expected longrope, got ${JSON.stringify(s)}`)
    expect(s.originalContext).toBe(4096)
    expect(s.longFactor).toHaveLength(48)
    // transformers: sqrt(1 + ln(131072 / 4096) / ln(4096)).
    expect(s.attentionFactor).toBeCloseTo(Math.sqrt(1 + Math.log(32) / Math.log(4096)), 12)
  })

  it('reads gemma-3-1b-it: five sliding layers per global one, local base, eos list', () => {
    const c = parseModelConfig(GEMMA3_1B_IT)
    expect(c).toMatchObject({ architecture: 'gemma3', hiddenSize: 1152, numHeads: 4, numKvHeads: 1 })
    expect(c).toMatchObject({ headDim: 256, slidingWindow: 512, localRopeTheta: 10000, ropeTheta: 1e6 })
    expect(c.tieWordEmbeddings).toBe(true)
    expect(c.queryPreAttnScalar).toBeUndefined() // 256 = head_dim
    expect(c.eosTokenId).toBe(1)
    expect(c.eosTokenIds).toEqual([1, 106])
    const full = (c.layerTypes ?? []).flatMap((t, i) => (t === 'full' ? [i] : []))
    expect(full).toEqual([5, 11, 17, 23])
    expect(layerAttention(c, 0)).toBe('sliding')
    const scalar = parseModelConfig({ ...GEMMA3_1B_IT, query_pre_attn_scalar: 144 })
    expect(attentionScaleOf(scalar)).toBe(1 / 12)
  })

  it('fills defaults for absent and null fields', () => {
    const expected: ModelConfig = {
      architecture: 'llama',
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 4,
      headDim: 16,
      intermediateSize: 128,
      vocabSize: 256,
      ropeTheta: 10000,
      rmsNormEps: 1e-6,
      tieWordEmbeddings: false,
      maxContext: 128,
      attentionBias: false,
      bosTokenId: undefined,
      eosTokenId: undefined,
    }
    expect(parseModelConfig(MINIMAL)).toEqual(expected)
    const nulls = {
      ...MINIMAL,
      num_key_value_heads: null,
      head_dim: null,
      bos_token_id: null,
      rope_scaling: null,
    }
    expect(parseModelConfig(nulls)).toEqual(expected)
  })

  it('honours an explicit head_dim that differs from hidden_size / heads', () => {
    expect(parseModelConfig({ ...MINIMAL, head_dim: 32 }).headDim).toBe(32)
  })

  it('takes rope_theta from rope_parameters when the top-level field is absent', () => {
    const c = parseModelConfig({ ...MINIMAL, rope_parameters: { rope_type: 'default', rope_theta: 500000 } })
    expect(c.ropeTheta).toBe(500000)
  })
})

describe('modelConfigToJson', () => {
  const configs = {
    smollm: parseModelConfig(SMOLLM_135M),
    smollmType: parseModelConfig({ ...SMOLLM_135M, model_type: 'smollm' }),
    qwen2: parseModelConfig(QWEN2_05B_INSTRUCT),
    mistral: parseModelConfig(MISTRAL_7B_V01),
    minimal: parseModelConfig(MINIMAL),
    llama32: parseModelConfig(LLAMA_32_1B),
    qwen3: parseModelConfig(QWEN3_06B),
    phi3: parseModelConfig(PHI3_MINI_4K),
    phi4: parseModelConfig(PHI4_MINI),
    gemma3: parseModelConfig(GEMMA3_1B_IT),
  }

  it.each(Object.entries(configs))('round-trips %s through JSON text', (_, config) => {
    const json = modelConfigToJson(config)
    expect(parseModelConfig(json)).toStrictEqual(config)
    expect(parseModelConfig(JSON.parse(JSON.stringify(json)))).toStrictEqual(config)
  })

  it('writes Hugging Face field names and architectures', () => {
    const json = modelConfigToJson(configs.qwen2)
    expect(json.architectures).toEqual(['Qwen2ForCausalLM'])
    expect(json.model_type).toBe('qwen2')
    expect(json.num_key_value_heads).toBe(2)
    expect(json.max_position_embeddings).toBe(32768)
    expect(json.eos_token_id).toEqual([151645, 151643])
    expect(json.hidden_act).toBe('silu')
    expect(modelConfigToJson(configs.smollm).architectures).toEqual(['LlamaForCausalLM'])
    expect(modelConfigToJson(configs.smollmType).architectures).toEqual(['LlamaForCausalLM'])
    expect(modelConfigToJson(configs.mistral).architectures).toEqual(['MistralForCausalLM'])
    expect('bos_token_id' in modelConfigToJson(configs.minimal)).toBe(false)
  })

  it('refuses to serialise an invalid config', () => {
    expect(() => modelConfigToJson({ ...configs.minimal, headDim: 15 })).toThrow(ModelConfigError)
  })
})

describe('validateModelConfig', () => {
  const good = parseModelConfig(SMOLLM_135M)
  it('returns a valid config unchanged', () => {
    expect(validateModelConfig(good)).toBe(good)
  })

  it.each<[string, Partial<Record<keyof ModelConfig, unknown>>, string]>([
    ['odd head dim', { headDim: 63 }, 'head_dim'],
    ['kv heads not dividing heads', { numKvHeads: 2 }, 'num_key_value_heads'],
    ['zero layers', { numLayers: 0 }, 'num_hidden_layers'],
    ['unknown architecture', { architecture: 'gpt2' }, 'model_type'],
    ['NaN eps', { rmsNormEps: Number.NaN }, 'rms_norm_eps'],
    ['string bias flag', { attentionBias: 'yes' }, 'attention_bias'],
    ['eos beyond vocab', { eosTokenId: 49152 }, 'eos_token_id'],
  ])('rejects %s', (_, patch, field) => {
    const bad = { ...good, ...patch } as ModelConfig
    expect(() => validateModelConfig(bad, 'peer config')).toThrow(ModelConfigError)
    expect(() => validateModelConfig(bad, 'peer config')).toThrow(field)
    expect(() => validateModelConfig(bad, 'peer config')).toThrow('peer config')
  })
})

describe('parseModelConfig rejects bad configs', () => {
  const without = (field: keyof typeof SMOLLM_135M) => {
    const copy: Record<string, unknown> = { ...SMOLLM_135M }
    delete copy[field]
    return copy
  }
  const cases: Array<[string, unknown, string]> = [
    ['missing model_type', without('model_type'), 'model_type'],
    ['unsupported model_type', { ...SMOLLM_135M, model_type: 'gemma' }, 'model_type'],
    ['numeric model_type', { ...SMOLLM_135M, model_type: 7 }, 'model_type'],
    ['missing hidden_size', without('hidden_size'), 'hidden_size'],
    ['string hidden_size', { ...SMOLLM_135M, hidden_size: '576' }, 'hidden_size'],
    ['zero hidden_size', { ...SMOLLM_135M, hidden_size: 0 }, 'hidden_size'],
    ['negative hidden_size', { ...SMOLLM_135M, hidden_size: -576 }, 'hidden_size'],
    ['fractional hidden_size', { ...SMOLLM_135M, hidden_size: 576.5, head_dim: 64 }, 'hidden_size'],
    ['absurd hidden_size', { ...SMOLLM_135M, hidden_size: 131072, head_dim: 64 }, 'hidden_size'],
    ['missing num_hidden_layers', without('num_hidden_layers'), 'num_hidden_layers'],
    ['absurd num_hidden_layers', { ...SMOLLM_135M, num_hidden_layers: 1025 }, 'num_hidden_layers'],
    ['zero num_attention_heads', { ...SMOLLM_135M, num_attention_heads: 0 }, 'num_attention_heads'],
    ['boolean num_attention_heads', { ...SMOLLM_135M, num_attention_heads: true }, 'num_attention_heads'],
    ['heads not divisible by kv heads', { ...SMOLLM_135M, num_key_value_heads: 2 }, 'num_key_value_heads'],
    ['string num_key_value_heads', { ...SMOLLM_135M, num_key_value_heads: '3' }, 'num_key_value_heads'],
    ['odd head_dim', { ...SMOLLM_135M, head_dim: 63 }, 'head_dim'],
    ['hidden not divisible by heads', { ...SMOLLM_135M, hidden_size: 577 }, 'head_dim'],
    ['negative intermediate_size', { ...SMOLLM_135M, intermediate_size: -1 }, 'intermediate_size'],
    ['missing vocab_size', without('vocab_size'), 'vocab_size'],
    ['absurd vocab_size', { ...SMOLLM_135M, vocab_size: 2_000_000 }, 'vocab_size'],
    ['NaN vocab_size', { ...SMOLLM_135M, vocab_size: Number.NaN }, 'vocab_size'],
    ['missing max_position_embeddings', without('max_position_embeddings'), 'max_position_embeddings'],
    [
      'absurd max_position_embeddings',
      { ...SMOLLM_135M, max_position_embeddings: 2 ** 21 },
      'max_position_embeddings',
    ],
    ['string rope_theta', { ...SMOLLM_135M, rope_theta: 'big' }, 'rope_theta'],
    ['negative rope_theta', { ...SMOLLM_135M, rope_theta: -1 }, 'rope_theta'],
    ['infinite rope_theta', { ...SMOLLM_135M, rope_theta: Number.POSITIVE_INFINITY }, 'rope_theta'],
    ['zero rms_norm_eps', { ...SMOLLM_135M, rms_norm_eps: 0 }, 'rms_norm_eps'],
    ['huge rms_norm_eps', { ...SMOLLM_135M, rms_norm_eps: 2 }, 'rms_norm_eps'],
    ['string tie_word_embeddings', { ...SMOLLM_135M, tie_word_embeddings: 'true' }, 'tie_word_embeddings'],
    ['numeric attention_bias', { ...SMOLLM_135M, attention_bias: 1 }, 'attention_bias'],
    [
      'linear rope_scaling without a factor',
      { ...SMOLLM_135M, rope_scaling: { type: 'linear' } },
      'rope_scaling',
    ],
    [
      'unknown rope type',
      { ...LLAMA_32_1B, rope_scaling: { rope_type: 'ntk-by-parts', factor: 2 } },
      'rope_scaling',
    ],
    ['heads not divisible by kv heads', { ...QWEN3_06B, num_key_value_heads: 5 }, 'num_key_value_heads'],
    ['hidden not divisible by heads', { ...MINIMAL, num_attention_heads: 5 }, 'head_dim'],
    [
      'layer_types of the wrong length',
      { ...GEMMA3_1B_IT, layer_types: ['sliding_attention'] },
      'layer_types',
    ],
    [
      'unknown layer type',
      { ...MISTRAL_7B_V01, num_hidden_layers: 2, layer_types: ['sliding_attention', 'chunked_attention'] },
      'layer_types',
    ],
    [
      'longrope factors of the wrong length',
      { ...PHI4_MINI, rope_scaling: { ...PHI4_MINI.rope_scaling, long_factor: [1, 2] } },
      'rope_scaling',
    ],
    ['partial_rotary_factor above 1', { ...PHI4_MINI, partial_rotary_factor: 1.5 }, 'partial_rotary_factor'],
    [
      'llama3 rope_scaling',
      {
        ...SMOLLM_135M,
        rope_scaling: { rope_type: 'llama3', factor: 8, original_max_position_embeddings: 8192 },
      },
      'rope_scaling',
    ],
    ['yarn rope_parameters', { ...SMOLLM_135M, rope_parameters: { rope_type: 'yarn' } }, 'rope_parameters'],
    ['gelu hidden_act', { ...SMOLLM_135M, hidden_act: 'gelu' }, 'hidden_act'],
    ['string bos_token_id', { ...SMOLLM_135M, bos_token_id: '<s>' }, 'bos_token_id'],
    ['negative eos_token_id', { ...SMOLLM_135M, eos_token_id: -1 }, 'eos_token_id'],
    ['fractional eos_token_id', { ...SMOLLM_135M, eos_token_id: 1.5 }, 'eos_token_id'],
    ['empty eos_token_id array', { ...SMOLLM_135M, eos_token_id: [] }, 'eos_token_id'],
    ['eos_token_id array of strings', { ...SMOLLM_135M, eos_token_id: ['</s>'] }, 'eos_token_id'],
    ['eos_token_id outside the vocab', { ...SMOLLM_135M, eos_token_id: 49152 }, 'eos_token_id'],
    ['negative sliding_window', { ...MISTRAL_7B_V01, sliding_window: -5 }, 'sliding_window'],
    ['string use_sliding_window', { ...QWEN2_05B_INSTRUCT, use_sliding_window: 'no' }, 'use_sliding_window'],
  ]

  it.each(cases)('%s → names %s', (_, json, field) => {
    let err: unknown
    try {
      parseModelConfig(json, 'models/smollm/config.json')
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ModelConfigError)
    const e = err as ModelConfigError
    expect(e.code).toBe('ERR_MODEL_CONFIG')
    expect(e.message).toContain('models/smollm/config.json')
    expect(e.message).toMatch(new RegExp(`\\b${field}\\b`))
  })

  it('says rope_scaling is unsupported', () => {
    expect(() => parseModelConfig({ ...SMOLLM_135M, rope_scaling: { type: 'dynamic' } })).toThrow(
      /rope_scaling.*unsupported/,
    )
  })

  it.each([null, undefined, 42, 'config', [SMOLLM_135M]])('rejects a non-object %j', (json) => {
    expect(() => parseModelConfig(json)).toThrow(ModelConfigError)
    expect(() => parseModelConfig(json)).toThrow('config.json')
  })
})
