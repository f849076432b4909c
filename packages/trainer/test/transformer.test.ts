import { ReferenceModel } from '@butterfly/core'
import { describe, expect, it } from 'vitest'
import { ParamLayout } from '../src/param-layout.js'
import { configForShape } from '../src/presets.js'
import { Rng } from '../src/rng.js'
import { Transformer } from '../src/transformer.js'
import { maxGradError, randomArray } from './grad-check.js'
import { referenceLogits, relativeError } from './reference.js'

describe('Transformer', () => {
  it('whole-model gradient equals finite differences (float64, GQA, 2 layers, odd length)', () => {
    const config = configForShape({ layers: 2, hidden: 8, heads: 4, kvHeads: 2, ffn: 12, context: 8 })
    const layout = new ParamLayout(config)
    const rng = new Rng(3)
    // Large random weights so every path (norm gains included) carries gradient.
    const params = randomArray(layout.size, rng, 0.5)
    const model = new Transformer(layout, 2, 7, 'f64')
    const inputs = Array.from({ length: 14 }, () => 3 + rng.int(256))
    const targets = Array.from({ length: 14 }, () => 3 + rng.int(256))
    const grads = new Float64Array(layout.size)
    model.forward(params, inputs, targets, 2, 7, { gradScale: 1 })
    model.backward(params, grads)
    const loss = () => model.forward(params, inputs, targets, 2, 7)
    expect(maxGradError(params, grads, loss)).toBeLessThan(1e-6)
  })

  it('gradient accumulates: backward adds to what is in grads', () => {
    const config = configForShape({ layers: 1, hidden: 8, heads: 2, kvHeads: 1, ffn: 8, context: 4 })
    const layout = new ParamLayout(config)
    const params = randomArray(layout.size, new Rng(5), 0.3)
    const model = new Transformer(layout, 1, 4, 'f64')
    const once = new Float64Array(layout.size)
    model.forward(params, [3, 4, 5, 6], [4, 5, 6, 7], 1, 4, { gradScale: 1 })
    model.backward(params, once)
    const twice = Float64Array.from(once)
    model.forward(params, [3, 4, 5, 6], [4, 5, 6, 7], 1, 4, { gradScale: 1 })
    model.backward(params, twice)
    for (let i = 0; i < once.length; i += 97) expect(twice[i]).toBeCloseTo(2 * (once[i] as number), 12)
    expect(() => model.backward(params, twice)).toThrow(/forward with a gradient scale/)
  })

  it('float32 logits equal core ReferenceModel within 1e-4 relative at every position', () => {
    for (const shape of [
      { layers: 2, hidden: 32, heads: 4, kvHeads: 2, ffn: 48, context: 40 },
      { layers: 3, hidden: 64, heads: 2, kvHeads: 2, ffn: 96, context: 40 },
    ]) {
      const config = configForShape(shape)
      const layout = new ParamLayout(config)
      const params = new Float32Array(layout.size)
      const rng = new Rng(11)
      layout.init(params, rng)
      // Scale weights up and perturb the norm gains so the comparison is not dominated by tiny values.
      for (let i = 0; i < params.length; i++) params[i] = (params[i] as number) * 10 + (i % 7 === 0 ? 0.1 : 0)
      const ids = Array.from({ length: 37 }, () => 3 + rng.int(256))
      const model = new Transformer(layout, 1, 37)
      model.forward(params, ids, ids, 1, 37)
      const weights = new Map([...layout.tensors(params)].map(([n, t]) => [n, t.data]))
      const ref = new ReferenceModel(config, weights)
      expect(relativeError(model.logits, referenceLogits(ref, ids))).toBeLessThan(1e-4)
    }
  })

  it('rejects batches that do not fit and token ids out of range', () => {
    const layout = new ParamLayout(
      configForShape({ layers: 1, hidden: 8, heads: 2, kvHeads: 1, ffn: 8, context: 4 }),
    )
    const params = new Float32Array(layout.size)
    const model = new Transformer(layout, 1, 4)
    expect(() => model.forward(params, [3, 3, 3, 3, 3], [3, 3, 3, 3, 3], 1, 5)).toThrow(/does not fit/)
    expect(() => model.forward(params, [3, 3, 3, 300], [3, 3, 3, 3], 1, 4)).toThrow(/out of range/)
    expect(() => new Transformer(layout, 1, 5)).toThrow(/exceeds the context/)
  })
})
