import { describe, expect, it } from 'vitest'
import { ModelConfigError, ModelFileError } from '../src/errors.js'
import {
  parameterCount,
  SYNTHETIC_PRESET_NAMES,
  SYNTHETIC_PRESETS,
  syntheticConfig,
  syntheticTensor,
  syntheticTensorSpecs,
  syntheticWeights,
} from '../src/model/synthetic.js'
import { expectedWeightShapes } from '../src/model/weight-names.js'
import { elementCount } from '../src/weights/tensor.js'

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length)

function stats(a: Float32Array): { mean: number; std: number } {
  let sum = 0
  for (const x of a) sum += x
  const mean = sum / a.length
  let sq = 0
  for (const x of a) sq += (x - mean) ** 2
  return { mean, std: Math.sqrt(sq / a.length) }
}

describe('presets', () => {
  it.each([
    // Computed by hand: embed + layers * (q + k + v + o + 2 norms + 3 MLP [+ biases]) + norm [+ head].
    ['tiny', 198_400],
    ['small', 543_104],
    ['10m', 10_409_280],
    ['100m', 100_092_672],
    ['1b', 1_057_581_056],
  ])('%s has %i parameters', (name, count) => {
    expect(parameterCount(syntheticConfig(name))).toBe(count)
  })

  it('sizes match their names', () => {
    const fp32Bytes = (name: string) => 4 * parameterCount(syntheticConfig(name))
    expect(fp32Bytes('tiny')).toBeGreaterThan(0.5e6)
    expect(fp32Bytes('tiny')).toBeLessThan(1.5e6)
    expect(fp32Bytes('small')).toBeGreaterThan(1.5e6)
    expect(fp32Bytes('small')).toBeLessThan(3e6)
    expect(Math.abs(parameterCount(syntheticConfig('100m')) / 1e8 - 1)).toBeLessThan(0.05)
    expect(Math.abs(parameterCount(syntheticConfig('10m')) / 1e7 - 1)).toBeLessThan(0.05)
    expect(Math.abs(parameterCount(syntheticConfig('1b')) / 1e9 - 1)).toBeLessThan(0.1)
  })

  it('the test-sized ones share rope/norm/special-token settings and have consistent head geometry', () => {
    for (const name of ['tiny', 'small', '10m', '100m', '1b']) {
      const c = syntheticConfig(name)
      expect(c).toMatchObject({ ropeTheta: 10000, rmsNormEps: 1e-5, bosTokenId: 1, eosTokenId: 2 })
      expect(c.numHeads % c.numKvHeads).toBe(0)
      expect(c.numHeads * c.headDim).toBe(c.hiddenSize)
      expect(c.numKvHeads).toBeLessThan(c.numHeads)
    }
  })

  it('exercise both tied and untied heads, and biases, with distinct small shapes', () => {
    const tiny = syntheticConfig('tiny')
    const small = syntheticConfig('small')
    expect(tiny).toMatchObject({ architecture: 'llama', tieWordEmbeddings: true, attentionBias: false })
    expect(tiny).toMatchObject({ vocabSize: 259, hiddenSize: 64, numLayers: 4, numHeads: 4, numKvHeads: 2 })
    expect(tiny).toMatchObject({ headDim: 16, intermediateSize: 172, maxContext: 512 })
    expect(small).toMatchObject({ architecture: 'qwen2', tieWordEmbeddings: false, attentionBias: true })
    expect(small.numLayers % 2).toBe(1)
    expect(small.hiddenSize).not.toBe(tiny.hiddenSize)
    for (const name of ['10m', '100m', '1b']) {
      expect(syntheticConfig(name)).toMatchObject({ architecture: 'llama', tieWordEmbeddings: true })
    }
  })

  it('real-size presets have the published shapes', () => {
    expect(SYNTHETIC_PRESET_NAMES).toEqual(
      expect.arrayContaining(['llama-3.2-1b', 'qwen2.5-0.5b', 'qwen3-0.6b', 'gemma-3-1b']),
    )
    const llama = syntheticConfig('llama-3.2-1b')
    expect(llama).toMatchObject({ hiddenSize: 2048, numLayers: 16, numHeads: 32, numKvHeads: 8, headDim: 64 })
    expect(llama).toMatchObject({ intermediateSize: 8192, vocabSize: 128256, maxContext: 131072 })
    expect(llama.ropeScaling).toEqual({
      type: 'llama3',
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalContext: 8192,
    })
    expect(llama.eosTokenIds).toEqual([128001, 128008, 128009])
    // Llama 3.2 1B has 1,235,814,400 parameters (tied), as its model card rounds to 1.23B.
    expect(parameterCount(llama)).toBe(1_235_814_400)
    const qwen25 = syntheticConfig('qwen2.5-0.5b')
    expect(qwen25).toMatchObject({
      architecture: 'qwen2',
      hiddenSize: 896,
      numLayers: 24,
      attentionBias: true,
    })
    // Qwen2.5-0.5B: 494,032,768 parameters (the model card's "0.49B").
    expect(parameterCount(qwen25)).toBe(494_032_768)
    const qwen3 = syntheticConfig('qwen3-0.6b')
    expect(qwen3).toMatchObject({ architecture: 'qwen3', hiddenSize: 1024, numHeads: 16, headDim: 128 })
    // Qwen3-0.6B: 596,049,920 parameters (the model card's "0.6B").
    expect(parameterCount(qwen3)).toBe(596_049_920)
    const gemma = syntheticConfig('gemma-3-1b')
    expect(gemma).toMatchObject({ architecture: 'gemma3', numHeads: 4, numKvHeads: 1, headDim: 256 })
    expect(gemma).toMatchObject({ slidingWindow: 512, localRopeTheta: 10000, ropeTheta: 1e6 })
    expect(gemma.queryPreAttnScalar).toBeUndefined()
    expect(gemma.layerTypes?.filter((t) => t === 'full').length).toBe(4)
    expect(gemma.layerTypes?.[5]).toBe('full')
    expect(gemma.layerTypes?.[4]).toBe('sliding')
    // Gemma 3 1B: 999,885,952 parameters.
    expect(parameterCount(gemma)).toBe(999_885_952)
  })

  it('Gemma norms are stored as offsets from one; q/k norms have gain ~1', () => {
    const gemma = { ...syntheticConfig('gemma-3-1b'), numLayers: 2, layerTypes: ['sliding', 'full'] } as const
    const input = stats(syntheticTensor(gemma, 'model.layers.0.input_layernorm.weight'))
    expect(Math.abs(input.mean)).toBeLessThan(0.01)
    const qNorm = stats(syntheticTensor(gemma, 'model.layers.0.self_attn.q_norm.weight'))
    expect(Math.abs(qNorm.mean)).toBeLessThan(0.01)
    const qwen3 = syntheticConfig('qwen3-0.6b')
    expect(stats(syntheticTensor(qwen3, 'model.layers.0.self_attn.k_norm.weight')).mean).toBeCloseTo(1, 1)
  })

  it('returns a copy, so callers cannot corrupt the presets', () => {
    const c = syntheticConfig('tiny') as { numLayers: number }
    c.numLayers = 99
    expect(syntheticConfig('tiny').numLayers).toBe(4)
    expect(SYNTHETIC_PRESETS.tiny.numLayers).toBe(4)
  })

  it.each(['', 'Tiny', 'huge', 'toString', '__proto__', 'constructor', ' tiny'])(
    'rejects unknown name %j, listing the valid ones',
    (name) => {
      expect(() => syntheticConfig(name)).toThrow(ModelConfigError)
      expect(() => syntheticConfig(name)).toThrow(/tiny, small, 10m, 100m, 1b/)
    },
  )
})

describe('syntheticTensorSpecs', () => {
  it('lists embed, layers in order, norm, then lm_head when untied', () => {
    const small = syntheticConfig('small')
    const specs = syntheticTensorSpecs(small)
    const names = specs.map((s) => s.name)
    expect(names[0]).toBe('model.embed_tokens.weight')
    expect(names.at(-2)).toBe('model.norm.weight')
    expect(names.at(-1)).toBe('lm_head.weight')
    const layerOf = names.slice(1, -2).map((n) => Number(/^model\.layers\.(\d+)\./.exec(n)?.[1]))
    expect(layerOf).toEqual([...layerOf].sort((a, b) => a - b))
    expect(new Set(layerOf)).toEqual(new Set([0, 1, 2, 3, 4]))
    expect(names).toContain('model.layers.4.self_attn.k_proj.bias')
    expect(new Map(specs.map((s) => [s.name, s.shape]))).toEqual(expectedWeightShapes(small))

    const tinyNames = syntheticTensorSpecs(syntheticConfig('tiny')).map((s) => s.name)
    expect(tinyNames.at(-1)).toBe('model.norm.weight')
    expect(tinyNames.some((n) => n.endsWith('.bias'))).toBe(false)
  })

  it('is stable across calls', () => {
    const c = syntheticConfig('1b')
    expect(syntheticTensorSpecs(c)).toEqual(syntheticTensorSpecs(c))
  })
})

describe('syntheticTensor', () => {
  const tiny = syntheticConfig('tiny')

  it('is deterministic per (seed, name), independent of generation order', () => {
    const a = syntheticWeights(tiny, 3)
    const reversed = [...syntheticTensorSpecs(tiny)].reverse()
    for (const { name, shape } of reversed) {
      const again = syntheticTensor(tiny, name, 3)
      expect(again.length).toBe(elementCount(shape))
      expect(bits(again)).toEqual(bits(a.get(name) as Float32Array))
    }
  })

  it('pins the generator: these exact bits are what every peer must produce', () => {
    // Changing the PRNG or scales changes every synthetic model; update deliberately.
    expect([...bits(syntheticTensor(tiny, 'model.embed_tokens.weight', 0)).slice(0, 4)]).toEqual([
      0x3d979240, 0xbd4f99dd, 0xbcfa3022, 0xbdc0d712,
    ])
    expect([...bits(syntheticTensor(tiny, 'model.layers.3.mlp.down_proj.weight', 7)).slice(0, 4)]).toEqual([
      0x3eba2b0f, 0x3e725be5, 0x3e84932f, 0x3eb41881,
    ])
  })

  it('differs between seeds and between tensors of the same shape', () => {
    const name = 'model.layers.0.self_attn.q_proj.weight'
    expect(bits(syntheticTensor(tiny, name, 0))).not.toEqual(bits(syntheticTensor(tiny, name, 1)))
    expect(bits(syntheticTensor(tiny, name, 0))).not.toEqual(
      bits(syntheticTensor(tiny, 'model.layers.1.self_attn.q_proj.weight', 0)),
    )
    expect(bits(syntheticTensor(tiny, name, 0xffffffff))).not.toEqual(bits(syntheticTensor(tiny, name, 0)))
  })

  it('has the intended scales', () => {
    const small = syntheticConfig('small')
    const check = (name: string, mean: number, std: number) => {
      const s = stats(syntheticTensor(small, name, 0))
      expect(Math.abs(s.mean - mean)).toBeLessThan(0.05 * Math.max(std, 0.1) + 0.01)
      expect(s.std / std).toBeGreaterThan(0.95)
      expect(s.std / std).toBeLessThan(1.05)
    }
    check('model.layers.2.self_attn.q_proj.weight', 0, 1 / Math.sqrt(96))
    check('model.layers.2.mlp.gate_proj.weight', 0, 1 / Math.sqrt(96))
    check('model.layers.2.mlp.down_proj.weight', 0, 1 / Math.sqrt(2 * 5 * 256))
    check('model.layers.2.self_attn.o_proj.weight', 0, 1 / Math.sqrt(2 * 5 * 96))
    check('lm_head.weight', 0, 4 / Math.sqrt(96))
    check('model.embed_tokens.weight', 0, 4 / Math.sqrt(96))
    // Tied: small embeddings, loud residual branches, final-norm gain 8 (see tensorScale).
    const tiny = syntheticConfig('tiny')
    const tinyEmbed = stats(syntheticTensor(tiny, 'model.embed_tokens.weight', 0))
    expect(tinyEmbed.std / (0.5 / 8)).toBeCloseTo(1, 1)
    expect(stats(syntheticTensor(tiny, 'model.norm.weight', 0)).mean).toBeCloseTo(8, 1)
    const tinyDown = stats(syntheticTensor(tiny, 'model.layers.0.mlp.down_proj.weight', 0))
    expect(tinyDown.std / (8 / Math.sqrt(2 * 4 * 172))).toBeCloseTo(1, 1)
    const norm = syntheticTensor(small, 'model.layers.0.input_layernorm.weight', 0)
    for (const w of norm) expect(Math.abs(w - 1)).toBeLessThan(0.09)
    const bias = syntheticTensor(small, 'model.layers.0.self_attn.q_proj.bias', 0)
    for (const b of bias) expect(Math.abs(b)).toBeLessThan(0.18)
  })

  it('can make one tensor of a big preset without building the rest', () => {
    const norm = syntheticTensor(syntheticConfig('1b'), 'model.layers.15.post_attention_layernorm.weight', 5)
    expect(norm.length).toBe(2048)
    expect(norm.every((x) => Number.isFinite(x))).toBe(true)
  })

  it.each([
    ['unknown name', 'model.layers.99.mlp.up_proj.weight'],
    ['lm_head of a tied model', 'lm_head.weight'],
    ['bias of an unbiased model', 'model.layers.0.self_attn.q_proj.bias'],
    ['empty name', ''],
  ])('rejects %s', (_label, name) => {
    expect(() => syntheticTensor(tiny, name)).toThrow(ModelFileError)
    expect(() => syntheticTensor(tiny, name)).toThrow(
      expect.objectContaining({ code: 'ERR_MODEL_TENSOR_MISSING' }),
    )
  })

  it.each([-1, 1.5, 2 ** 32, Number.NaN])('rejects seed %s', (seed) => {
    expect(() => syntheticTensor(tiny, 'model.norm.weight', seed)).toThrow(ModelConfigError)
  })
})
