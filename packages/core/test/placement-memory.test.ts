import { describe, expect, it } from 'vitest'
import { ModelConfigError, PlacementError } from '../src/errors.js'
import type { ModelConfig } from '../src/model/model-config.js'
import { parameterCount, syntheticConfig } from '../src/model/synthetic.js'
import { layerWeightShapes } from '../src/model/weight-names.js'
import { maxLayersInMemory, stageMemoryBytes, stageMemoryModel } from '../src/placement/stage-memory.js'
import { elementCount } from '../src/weights/tensor.js'
import { TOY_EMBED, TOY_HEAD, TOY_LAYER, TOY_MEMORY, toyConfig } from './placement-helpers.js'

describe('stageMemoryBytes', () => {
  it('prices the toy model by hand: layer 280, embeddings 40, norm + head 44', () => {
    const c = toyConfig()
    expect(stageMemoryBytes(c, 1, 2, TOY_MEMORY)).toBe(TOY_LAYER)
    expect(stageMemoryBytes(c, 1, 3, TOY_MEMORY)).toBe(2 * TOY_LAYER)
    expect(stageMemoryBytes(c, 0, 2, TOY_MEMORY)).toBe(TOY_EMBED + 2 * TOY_LAYER)
    expect(stageMemoryBytes(c, 3, 4, TOY_MEMORY)).toBe(TOY_HEAD + TOY_LAYER)
    expect(stageMemoryBytes(c, 0, 4, TOY_MEMORY)).toBe(TOY_EMBED + TOY_HEAD + 4 * TOY_LAYER)
  })

  it('adds the overhead once per stage and scales weights (not the fp32 KV cache) by bytesPerParam', () => {
    const c = toyConfig()
    expect(stageMemoryBytes(c, 1, 2, { ...TOY_MEMORY, overheadBytes: 1000 })).toBe(TOY_LAYER + 1000)
    // 152 weights at 2 bytes + 128 KV bytes.
    expect(stageMemoryBytes(c, 1, 2, { ...TOY_MEMORY, bytesPerParam: 2 })).toBe(152 * 2 + 128)
    // KV: 2 (k, v) x kvDim 2 x 3 tokens x 4 bytes = 48.
    expect(stageMemoryBytes(c, 1, 2, { ...TOY_MEMORY, kvContext: 3 })).toBe(152 + 48)
  })

  it('defaults to fp32 weights, KV for maxContext and 64 MiB of overhead', () => {
    const c = toyConfig()
    expect(stageMemoryBytes(c, 1, 2)).toBe(152 * 4 + 128 + 64 * 2 ** 20)
  })

  it('counts a tied head on a last stage that is not stage 0, and only once on a single stage', () => {
    const c = toyConfig({ tieWordEmbeddings: true })
    expect(stageMemoryBytes(c, 3, 4, TOY_MEMORY)).toBe(TOY_HEAD + TOY_LAYER)
    expect(stageMemoryBytes(c, 0, 4, TOY_MEMORY)).toBe(TOY_EMBED + 4 + 4 * TOY_LAYER)
  })

  it('counts q/k/v biases for qwen2-style configs', () => {
    const c = toyConfig({ attentionBias: true, architecture: 'qwen2' })
    // qDim 4 + 2 x kvDim 2 = 8 more weights per layer.
    expect(stageMemoryBytes(c, 1, 2, TOY_MEMORY)).toBe(TOY_LAYER + 8)
  })

  it.each(['tiny', 'small', '10m', '100m', '1b'])('agrees with the weight shapes of synthetic:%s', (name) => {
    const c = syntheticConfig(name)
    const opts = { bytesPerParam: 1, kvContext: 1, overheadBytes: 0 }
    const kvPerLayer = 2 * c.numKvHeads * c.headDim * 4
    const whole = stageMemoryBytes(c, 0, c.numLayers, opts)
    expect(whole - c.numLayers * kvPerLayer).toBe(parameterCount(c))
    const layerWeights = layerWeightShapes(c, 0).reduce((n, [, shape]) => n + elementCount(shape), 0)
    if (c.numLayers > 2) expect(stageMemoryBytes(c, 1, 2, opts)).toBe(layerWeights + kvPerLayer)
    // Split anywhere: the parts add up to the whole, plus one more head table when it is tied.
    const cut = Math.floor(c.numLayers / 2)
    const parts = stageMemoryBytes(c, 0, cut, opts) + stageMemoryBytes(c, cut, c.numLayers, opts)
    const extra = c.tieWordEmbeddings ? c.vocabSize * c.hiddenSize : 0
    expect(parts).toBe(whole + extra)
  })

  it.each([
    [-1, 2],
    [0, 0],
    [2, 1],
    [0, 5],
    [0.5, 2],
    [Number.NaN, 2],
    [0, Number.POSITIVE_INFINITY],
  ])('rejects layer range [%s, %s)', (start, end) => {
    expect(() => stageMemoryBytes(toyConfig(), start, end, TOY_MEMORY)).toThrow(
      expect.objectContaining({ name: 'PlacementError', code: 'ERR_PLACEMENT_INPUT' }),
    )
  })

  it.each([
    { bytesPerParam: 0 },
    { bytesPerParam: -2 },
    { bytesPerParam: Number.NaN },
    { bytesPerParam: Number.POSITIVE_INFINITY },
    { kvContext: 0 },
    { kvContext: 1.5 },
    { kvContext: 9 },
    { overheadBytes: -1 },
    { overheadBytes: Number.NaN },
  ])('rejects option %o', (bad) => {
    const err = (() => {
      try {
        stageMemoryBytes(toyConfig(), 0, 1, { ...TOY_MEMORY, ...bad })
      } catch (e) {
        return e
      }
      return undefined
    })()
    expect(err).toBeInstanceOf(PlacementError)
    expect((err as PlacementError).code).toBe('ERR_PLACEMENT_INPUT')
  })

  it('rejects an invalid model config with ModelConfigError', () => {
    const bad = { ...toyConfig(), numLayers: 0 } as ModelConfig
    expect(() => stageMemoryBytes(bad, 0, 1, TOY_MEMORY)).toThrow(ModelConfigError)
  })
})

describe('maxLayersInMemory', () => {
  const model = stageMemoryModel(toyConfig(), TOY_MEMORY)

  it.each([
    [false, false, TOY_LAYER * 2, 2],
    [false, false, TOY_LAYER * 2 - 1, 1],
    [true, false, TOY_EMBED + TOY_LAYER * 3, 3],
    [true, false, TOY_EMBED + TOY_LAYER * 3 - 1, 2],
    [false, true, TOY_HEAD + TOY_LAYER, 1],
    [false, true, TOY_HEAD + TOY_LAYER - 1, 0],
    [true, true, TOY_EMBED + TOY_HEAD - 1, 0],
    [false, false, 1e12, 4],
    [false, false, 0, 0],
  ])('first=%s last=%s in %d bytes holds %d layers', (first, last, bytes, layers) => {
    expect(maxLayersInMemory(model, first, last, bytes)).toBe(layers)
  })
})
