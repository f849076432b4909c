import { generate } from '@butterfly/core'
import {
  argmax,
  buildPipeline,
  referenceFor,
  relativeError,
  stepLogits,
  syntheticConfig,
} from '@butterfly/testing/node'
import { afterAll, describe, expect, test } from 'vitest'

// Tolerances: ORT computes in fp32, the reference in float64. Errors are measured as
// max |ort - ref| / max |ref| over the whole logit vector.
const FP32_REL_TOL = 1e-4
const STEPS = 64

for (const name of ['tiny', 'small']) {
  const config = syntheticConfig(name)
  const ks = [...new Set([1, 2, 3, config.numLayers])]
  const prompt = [1, 40, 75, 80, 75, 3 + 32, 110, 120]

  describe(`synthetic:${name} (${config.numLayers} layers)`, () => {
    const reference = referenceFor(config)
    const greedy = new Map<number, number[]>()
    const disposers: Array<() => Promise<void>> = []
    afterAll(async () => {
      await Promise.all(disposers.map((d) => d()))
    })

    for (const k of ks) {
      test(`K=${k}: logits match the reference and greedy decoding is stable`, async () => {
        const pipeline = await buildPipeline(config, k, { emitLogits: true })
        disposers.push(pipeline.dispose)
        const cache = reference.createCache()
        let expected = reference.forward(prompt, cache)
        let actual = await stepLogits(pipeline, 'g', prompt, 0)
        let pos = prompt.length
        const tokens: number[] = []
        for (let step = 0; step < STEPS; step++) {
          expect(relativeError(actual, expected)).toBeLessThan(FP32_REL_TOL)
          const token = argmax(actual)
          expect(token).toBe(argmax(expected))
          tokens.push(token)
          expected = reference.forward([token], cache)
          actual = await stepLogits(pipeline, 'g', [token], pos)
          pos++
        }
        greedy.set(k, tokens)
      })
    }

    test('greedy tokens are identical for every K', () => {
      const runs = [...greedy.values()]
      expect(runs.length).toBe(ks.length)
      for (const run of runs) expect(run).toEqual(runs[0])
    })

    test('the generate() loop gives the same tokens for every K', async () => {
      const outputs: number[][] = []
      for (const k of ks) {
        const pipeline = await buildPipeline(config, k)
        disposers.push(pipeline.dispose)
        const ids: number[] = []
        for await (const t of generate(pipeline, {
          promptIds: prompt,
          maxTokens: STEPS,
          sampling: { temperature: 0 },
        })) {
          ids.push(t.id)
        }
        expect(ids).toHaveLength(STEPS)
        outputs.push(ids)
      }
      for (const o of outputs) expect(o).toEqual(outputs[0])
      expect(outputs[0]).toEqual(greedy.get(1))
    })
  })
}

describe('KV cache', () => {
  const config = syntheticConfig('small')

  test('decode with the cache equals full recompute of the whole prefix', async () => {
    const pipeline = await buildPipeline(config, 2, { emitLogits: true })
    try {
      const seq = [1, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100]
      let pos = 0
      let cached = await stepLogits(pipeline, 'cached', seq.slice(0, 4), 0)
      pos = 4
      for (let n = 5; n <= seq.length; n++) {
        cached = await stepLogits(pipeline, 'cached', [seq[n - 1] as number], pos)
        pos++
        const fresh = await stepLogits(pipeline, `fresh-${n}`, seq.slice(0, n), 0)
        for (const s of pipeline.stages) s.endGeneration(`fresh-${n}`)
        expect(relativeError(cached, fresh)).toBeLessThan(1e-5)
      }
    } finally {
      await pipeline.dispose()
    }
  })

  test('a prefill of N tokens equals N single-token steps, and chunked prefill too', async () => {
    const pipeline = await buildPipeline(config, 3, { emitLogits: true })
    try {
      const seq = Array.from({ length: 40 }, (_, i) => 3 + ((i * 37) % 250))
      const whole = await stepLogits(pipeline, 'whole', seq, 0)
      let single: Float32Array = new Float32Array()
      for (let i = 0; i < seq.length; i++)
        single = await stepLogits(pipeline, 'single', [seq[i] as number], i)
      let chunked: Float32Array = new Float32Array()
      for (let i = 0; i < seq.length; i += 16)
        chunked = await stepLogits(pipeline, 'chunk', seq.slice(i, i + 16), i)
      expect(relativeError(single, whole)).toBeLessThan(1e-5)
      expect(relativeError(chunked, whole)).toBeLessThan(1e-5)
    } finally {
      await pipeline.dispose()
    }
  })

  test('the cache grows past its first block without changing results', async () => {
    const pipeline = await buildPipeline(config, 1, { emitLogits: true })
    const reference = referenceFor(config)
    try {
      const seq = Array.from({ length: 300 }, (_, i) => 3 + ((i * 11) % 250))
      const cache = reference.createCache()
      reference.forward(seq.slice(0, 250), cache)
      await stepLogits(pipeline, 'g', seq.slice(0, 250), 0)
      for (let i = 250; i < seq.length; i++) {
        const expected = reference.forward([seq[i] as number], cache)
        const actual = await stepLogits(pipeline, 'g', [seq[i] as number], i)
        expect(relativeError(actual, expected)).toBeLessThan(FP32_REL_TOL)
      }
    } finally {
      await pipeline.dispose()
    }
  })

  test('steps out of order and unknown generations are refused with stable codes', async () => {
    const pipeline = await buildPipeline(config, 1, { emitLogits: true })
    try {
      await stepLogits(pipeline, 'g', [1, 2, 3], 0)
      await expect(stepLogits(pipeline, 'g', [4], 5)).rejects.toMatchObject({ code: 'ERR_STEP_ORDER' })
      await expect(stepLogits(pipeline, 'other', [4], 3)).rejects.toMatchObject({ code: 'ERR_STEP_ORDER' })
      await expect(stepLogits(pipeline, 'h', [config.vocabSize], 0)).rejects.toMatchObject({
        code: 'ERR_STEP_INPUT',
      })
      const stage = pipeline.stages[0]
      expect(stage?.activeGenerations).toBe(1)
      stage?.endGeneration('g')
      expect(stage?.activeGenerations).toBe(0)
    } finally {
      await pipeline.dispose()
    }
  })
})

describe('fp16 weights', () => {
  test('fp16-stored weights match the reference on the same rounded weights', async () => {
    const config = syntheticConfig('tiny')
    const reference = referenceFor(config, 'F16')
    const pipeline = await buildPipeline(config, 2, { dtype: 'F16', emitLogits: true })
    try {
      const prompt = [1, 50, 60, 70, 80]
      const cache = reference.createCache()
      let expected = reference.forward(prompt, cache)
      let actual = await stepLogits(pipeline, 'g', prompt, 0)
      for (let i = 0; i < 16; i++) {
        expect(relativeError(actual, expected)).toBeLessThan(FP32_REL_TOL)
        const t = argmax(expected)
        expected = reference.forward([t], cache)
        actual = await stepLogits(pipeline, 'g', [t], prompt.length + i)
      }
    } finally {
      await pipeline.dispose()
    }
  })
})
