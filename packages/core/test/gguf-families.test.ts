import { type GgufMeta, ggufModelFile, llama3RopeFreqs, seededWeights } from '@butterfly/testing'
import { describe, expect, test } from 'vitest'
import { ButterflyError } from '../src/errors.js'
import { openGgufModel } from '../src/formats/gguf-model.js'
import type { ModelConfig } from '../src/model/model-config.js'
import { bytesSource } from '../src/weights/byte-source.js'
import { toFloat32 } from '../src/weights/float16.js'

const base = {
  vocabSize: 320,
  hiddenSize: 32,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 8,
  intermediateSize: 48,
  ropeTheta: 10_000,
  rmsNormEps: 1e-5,
  tieWordEmbeddings: false,
  maxContext: 128,
  attentionBias: false,
  bosTokenId: 1,
  eosTokenId: 2,
} as const satisfies Omit<ModelConfig, 'architecture'>

const llama3 = {
  type: 'llama3',
  factor: 8,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalContext: 32,
} as const
const yarn = {
  type: 'yarn',
  factor: 4,
  originalContext: 32,
  betaFast: 32,
  betaSlow: 1,
  attentionFactor: 1.125,
  truncate: true,
} as const
const gemmaTypes = ['sliding', 'full'] as const

/** [what we write, what the import must read back (when it differs)]. */
const FAMILIES: Array<[string, ModelConfig, ModelConfig?]> = [
  [
    'llama with llama3 scaling (rope_freqs.weight)',
    { ...base, architecture: 'llama', ropeScaling: llama3 },
    {
      ...base,
      architecture: 'llama',
      ropeScaling: { type: 'frequency_factors', factors: [...llama3RopeFreqs(8, 10_000, llama3)] },
    },
  ],
  ['mistral (converted as llama)', { ...base, architecture: 'mistral' }, { ...base, architecture: 'llama' }],
  [
    'llama with linear scaling',
    { ...base, architecture: 'llama', ropeScaling: { type: 'linear', factor: 2 } },
  ],
  ['qwen2 with biases', { ...base, architecture: 'qwen2', attentionBias: true }],
  ['llama with biases (permuted with their rows)', { ...base, architecture: 'llama', attentionBias: true }],
  ['qwen3 with yarn and head_dim 16', { ...base, architecture: 'qwen3', headDim: 16, ropeScaling: yarn }],
  [
    'phi3 with partial rotary and a window',
    { ...base, architecture: 'phi3', rotaryDim: 4, slidingWindow: 16 },
  ],
  [
    'gemma3 with a window (pattern 2) and a local base',
    {
      ...base,
      architecture: 'gemma3',
      tieWordEmbeddings: true,
      slidingWindow: 16,
      layerTypes: gemmaTypes,
      localRopeTheta: 10_000,
    },
  ],
]

describe('GGUF import of each family', () => {
  test.each(FAMILIES)('%s: config and every tensor as HF has them', async (_, config, expected) => {
    const weights = seededWeights(config, 3)
    const extraMeta: GgufMeta[] =
      config.architecture === 'gemma3'
        ? [{ key: 'gemma3.attention.sliding_window_pattern', type: 'u32', value: 2 }]
        : []
    const source = await openGgufModel(
      bytesSource('model.gguf', ggufModelFile(config, weights, { extraMeta })),
    )
    expect(source.config).toEqual(expected ?? config)
    expect(source.tensors.map((t) => t.name).sort()).toEqual([...weights.keys()].sort())
    for (const t of source.tensors) {
      const got = toFloat32(await t.read())
      const want = weights.get(t.name) as Float32Array
      // Gemma's norms go through 1 + w and back in float32: equal to within one rounding.
      const tol = config.architecture === 'gemma3' && t.name.endsWith('norm.weight') ? 1e-6 : 0
      let worst = 0
      for (let i = 0; i < want.length; i++)
        worst = Math.max(worst, Math.abs((got[i] as number) - (want[i] as number)))
      expect(worst, t.name).toBeLessThanOrEqual(tol)
    }
  })

  test("gemma3 without pattern metadata takes llama.cpp's period 6", async () => {
    const config: ModelConfig = {
      ...base,
      architecture: 'gemma3',
      numLayers: 7,
      tieWordEmbeddings: true,
      slidingWindow: 16,
      layerTypes: ['sliding', 'sliding', 'sliding', 'sliding', 'sliding', 'full', 'sliding'],
      localRopeTheta: 10_000,
    }
    const gguf = ggufModelFile(config, seededWeights(config, 4), { dropMeta: ['gemma3.rope.freq_base_swa'] })
    expect((await openGgufModel(bytesSource('model.gguf', gguf))).config).toEqual(config)
  })

  test('a phi3 window of 0 (the converter writes it for none) is no window', async () => {
    const config: ModelConfig = { ...base, architecture: 'phi3' }
    const gguf = ggufModelFile(config, seededWeights(config, 5))
    expect((await openGgufModel(bytesSource('model.gguf', gguf))).config.slidingWindow).toBeUndefined()
  })
})

describe('GGUF features we refuse, by key', () => {
  const llama: ModelConfig = { ...base, architecture: 'llama' }
  const qwen2: ModelConfig = { ...base, architecture: 'qwen2' }
  const set = (config: ModelConfig, meta: GgufMeta[], drop: string[] = []) =>
    ggufModelFile(config, seededWeights(config, 6), {
      extraMeta: meta,
      dropMeta: [...drop, ...meta.map((m) => m.key)],
    })
  const cases: Array<[string, Uint8Array, string, RegExp]> = [
    [
      'partial rotary on the llama arch',
      set(llama, [{ key: 'llama.rope.dimension_count', type: 'u32', value: 4 }]),
      'ERR_MODEL_CONFIG',
      /llama.rope.dimension_count: 4 \(partial rotary\) is not supported for llama/,
    ],
    [
      'a sliding window on qwen2',
      set(qwen2, [{ key: 'qwen2.attention.sliding_window', type: 'u32', value: 8 }]),
      'ERR_MODEL_CONFIG',
      /qwen2.attention.sliding_window: a sliding window is not supported for qwen2/,
    ],
    [
      'logit soft-capping',
      set(llama, [{ key: 'llama.final_logit_softcapping', type: 'f32', value: 30 }]),
      'ERR_MODEL_CONFIG',
      /llama.final_logit_softcapping: logit soft-capping is not supported/,
    ],
    [
      'yarn without a factor',
      set(qwen2, [{ key: 'qwen2.rope.scaling.type', type: 'string', value: 'yarn' }]),
      'ERR_MODEL_CONFIG',
      /qwen2.rope.scaling.factor: is missing/,
    ],
    [
      'an unknown scaling type',
      set(qwen2, [{ key: 'qwen2.rope.scaling.type', type: 'string', value: 'dynamic' }]),
      'ERR_MODEL_CONFIG',
      /qwen2.rope.scaling.type: RoPE scaling \(dynamic\) is not supported/,
    ],
    [
      'a value length unlike the key length',
      set(qwen2, [{ key: 'qwen2.attention.value_length', type: 'u32', value: 16 }]),
      'ERR_MODEL_CONFIG',
      /qwen2.attention.value_length: 16 differs from key_length 8/,
    ],
    [
      'a missing q norm (qwen3)',
      ggufModelFile(
        { ...base, architecture: 'qwen3' },
        seededWeights({ ...base, architecture: 'qwen3' }, 6),
        {
          dropTensors: ['blk.0.attn_q_norm.weight'],
        },
      ),
      'ERR_MODEL_TENSOR_MISSING',
      /tensor blk\.0\.attn_q_norm\.weight/,
    ],
  ]
  test.each(cases)('%s', async (_, bytes, code, message) => {
    const err = await openGgufModel(bytesSource('model.gguf', bytes)).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ButterflyError)
    expect((err as ButterflyError).code).toBe(code)
    expect((err as ButterflyError).message).toMatch(message)
  })
})
