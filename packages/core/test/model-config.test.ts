import { describe, expect, it } from 'vitest'
import { ModelConfigError } from '../src/errors.js'
import type { ModelConfig } from '../src/model/model-config.js'
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

  it('caps Mistral v0.1 context at its sliding window, where full attention is exact', () => {
    const c = parseModelConfig(MISTRAL_7B_V01)
    expect(c.architecture).toBe('mistral')
    expect(c.maxContext).toBe(4096)
    expect(c.numKvHeads).toBe(8)
    expect(c.headDim).toBe(128)
    expect(c.attentionBias).toBe(false)
    expect(parseModelConfig({ ...MISTRAL_7B_V01, sliding_window: null }).maxContext).toBe(32768)
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
    expect(json.eos_token_id).toBe(151645)
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
    ['linear rope_scaling', { ...SMOLLM_135M, rope_scaling: { type: 'linear', factor: 2 } }, 'rope_scaling'],
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
