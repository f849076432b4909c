import { describe, expect, it } from 'vitest'
import { corpusFromText, heldOutWindows } from '../src/corpus.js'
import { learningRate } from '../src/optimizer.js'
import { MODEL_PRESETS } from '../src/presets.js'
import { Rng } from '../src/rng.js'
import { DEFAULT_HYPERPARAMETERS, type TrainOptions, train } from '../src/trainer.js'

const TEXT = 'To be, or not to be, that is the question: whether tis nobler in the mind to suffer. '.repeat(
  120,
)

function options(over: Partial<TrainOptions> = {}): TrainOptions {
  return {
    ...DEFAULT_HYPERPARAMETERS,
    corpus: corpusFromText('repeated.txt', TEXT),
    shape: MODEL_PRESETS.tiny,
    steps: 12,
    batch: 4,
    threads: 1,
    lr: 1e-2,
    minLr: 1e-3,
    warmupSteps: 5,
    evalInterval: 0,
    evalWindows: 4,
    ...over,
  }
}

const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)

describe('train', () => {
  it('learns a repetitive text: held-out loss falls from ln(259) = 5.56 to below 1 nat/byte', async () => {
    const evals: number[] = []
    const r = await train(options({ steps: 300, lr: 3e-2, minLr: 3e-3, evalInterval: 100 }), (e) => {
      if (e.kind === 'eval') evals.push(e.valLoss)
    })
    expect(r.history.map((h) => h.step)).toEqual([100, 200, 300])
    expect(evals[0]).toBeLessThan(3)
    expect(r.valScope).toBe('full')
    expect(r.valLoss).toBeLessThan(1)
    expect(r.trainLoss).toBeLessThan(1)
  })

  it('is deterministic: same seed, same bits, for 1 and 2 threads alike; another seed differs', async () => {
    const a = await train(options({ threads: 1 }))
    const b = await train(options({ threads: 1 }))
    expect(bytesOf(a.params).equals(bytesOf(b.params))).toBe(true)
    const c = await train(options({ threads: 2 }))
    const d = await train(options({ threads: 2 }))
    expect(bytesOf(c.params).equals(bytesOf(d.params))).toBe(true)
    // The batch is always cut into the same shards, so the thread count does not change a bit.
    expect(bytesOf(a.params).equals(bytesOf(c.params))).toBe(true)
    expect(a.valLoss).toBe(c.valLoss)
    const e = await train(options({ threads: 1, seed: 2 }))
    expect(bytesOf(a.params).equals(bytesOf(e.params))).toBe(false)
  })

  it('rejects inconsistent options before training', async () => {
    await expect(train(options({ batch: 3 }))).rejects.toThrow(/multiple of shards/)
    await expect(train(options({ threads: 3 }))).rejects.toThrow(/cannot exceed shards/)
    await expect(train(options({ steps: -1 }))).rejects.toThrow(/steps must be/)
    await expect(train(options({ minLr: 1 }))).rejects.toThrow(/minLr/)
    await expect(
      train(options({ corpus: corpusFromText('short.txt', 'abc'.repeat(100)) })),
    ).rejects.toMatchObject({
      code: 'ERR_CORPUS_TOO_SMALL',
    })
  })
})

describe('held-out windows', () => {
  it('score every held-out target exactly once', () => {
    for (const [n, T] of [
      [1000, 32],
      [1111, 10],
      [990, 9],
      [1000, 100],
    ] as const) {
      const corpus = corpusFromText('x', 'a'.repeat(n))
      const seen = new Map<number, number>()
      for (const w of heldOutWindows(corpus, T)) {
        for (let r = w.firstRow; r < T; r++) seen.set(w.start + r, (seen.get(w.start + r) ?? 0) + 1)
      }
      expect(seen.size).toBe(n - corpus.trainEnd)
      expect([...seen.values()].every((c) => c === 1)).toBe(true)
      expect(Math.min(...seen.keys())).toBe(corpus.trainEnd)
      expect(Math.max(...seen.keys())).toBe(n - 1)
    }
  })
})

describe('schedule and RNG', () => {
  it('warms up linearly, peaks, and decays by cosine to minLr', () => {
    const o = { lr: 1, minLr: 0.1, warmupSteps: 10, steps: 110 }
    expect(learningRate(0, o)).toBeCloseTo(0.1, 12)
    expect(learningRate(9, o)).toBeCloseTo(1, 12)
    expect(learningRate(10, o)).toBeCloseTo(1, 12)
    expect(learningRate(59.5, o)).toBeCloseTo(0.55, 12)
    expect(learningRate(109, o)).toBeCloseTo(0.1, 12)
  })

  it('xoshiro128** streams are reproducible and roughly uniform/normal', () => {
    const a = new Rng(42)
    const b = new Rng(42)
    const xs = Array.from({ length: 20_000 }, () => a.next())
    expect(xs.slice(0, 5)).toEqual(Array.from({ length: 5 }, () => b.next()))
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01)
    const n = new Rng(1)
    const zs = Array.from({ length: 20_000 }, () => n.normal())
    const m = zs.reduce((s, z) => s + z, 0) / zs.length
    const v = zs.reduce((s, z) => s + (z - m) ** 2, 0) / zs.length
    expect(Math.abs(m)).toBeLessThan(0.03)
    expect(Math.abs(v - 1)).toBeLessThan(0.05)
    expect(new Rng(2 ** 40).nextU32()).not.toBe(new Rng(0).nextU32())
    expect(() => new Rng(-1)).toThrow(RangeError)
  })
})
