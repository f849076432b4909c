import { describe, expect, it } from 'vitest'
import { VerifyError } from '../src/errors.js'
import { ReferenceModel } from '../src/model/reference-model.js'
import { syntheticConfig, syntheticWeights } from '../src/model/synthetic.js'
import { calibrationTokens, referenceBoundaries } from '../src/verify/calibration-reference.js'
import { fromFloat32 } from '../src/weights/float16.js'
import type { WeightProvider } from '../src/weights/weight-provider.js'

const config = syntheticConfig('small')
const weights = syntheticWeights(config, 3)
const provider: WeightProvider = async (name, shape) => ({
  dtype: 'F32',
  shape,
  data: fromFloat32(weights.get(name) as Float32Array, 'F32'),
})

describe('referenceBoundaries', () => {
  it('streams layer by layer to the same states as the whole reference model, bit for bit', async () => {
    const tokens = calibrationTokens(config)
    const loaded: string[] = []
    const boundaries = await referenceBoundaries(
      config,
      async (name, shape) => {
        loaded.push(name)
        return provider(name, shape)
      },
      tokens,
    )
    expect(boundaries).toHaveLength(config.numLayers + 1)
    const whole = new ReferenceModel(config, weights)
    const cache = whole.createCache()
    let x = whole.embed(tokens)
    expect(boundaries[0]).toEqual(x)
    for (let l = 0; l < config.numLayers; l++) {
      x = whole.runLayers(x, tokens.length, 0, l, l + 1, cache)
      expect(boundaries[l + 1]).toEqual(x)
    }
    // Only the embedding and the layers were read, never the head.
    expect(loaded).not.toContain('lm_head.weight')
    expect(new Set(loaded).size).toBe(loaded.length)
  })

  it('refuses calibration tokens outside the vocabulary', async () => {
    for (const bad of [[], [-1], [config.vocabSize], [1.5]]) {
      await expect(referenceBoundaries(config, provider, bad)).rejects.toBeInstanceOf(VerifyError)
    }
  })

  it('calibration tokens are in range and distinct', () => {
    const t = calibrationTokens(syntheticConfig('tiny'))
    expect(t).toHaveLength(8)
    expect(new Set(t).size).toBe(8)
    expect(t.every((x) => x >= 0 && x < syntheticConfig('tiny').vocabSize)).toBe(true)
  })
})
