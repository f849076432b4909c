import { describe, expect, it } from 'vitest'
import { Xoshiro128ss } from '../src/base/rng.js'
import type { TopKLogits } from '../src/base/top-k-logits.js'
import {
  logitTemperature,
  Sampler,
  type SamplingParams,
  topKFromLogits,
  validateSamplingParams,
} from '../src/engine/sampler.js'
import { SamplingError } from '../src/errors.js'

const LOGITS = new Float32Array([1.5, -0.25, 3, 0.75, 2.25, -1, 0, 2.5])
const DRAWS = 20000
const FREQ_TOLERANCE = 0.02

/** Full-vocabulary probabilities at temperature t, computed independently of the code under test. */
function softmax(logits: Float32Array, t: number): number[] {
  const max = Math.max(...logits)
  const e = Array.from(logits, (v) => Math.exp((v - max) / t))
  const sum = e.reduce((a, b) => a + b, 0)
  return e.map((v) => v / sum)
}

/** Keeps `keep` ids (others 0) and renormalises. */
function restrict(p: number[], keep: number[]): number[] {
  const mass = keep.reduce((a, i) => a + (p[i] as number), 0)
  return p.map((v, i) => (keep.includes(i) ? v / mass : 0))
}

function idsByProbability(p: number[]): number[] {
  return p.map((_, i) => i).sort((a, b) => (p[b] as number) - (p[a] as number) || a - b)
}

function frequencies(sampler: Sampler, topk: TopKLogits, vocab: number): number[] {
  const counts = new Array<number>(vocab).fill(0)
  for (let i = 0; i < DRAWS; i++) {
    const id = sampler.sample(topk)
    counts[id] = (counts[id] as number) + 1
  }
  return counts.map((c) => c / DRAWS)
}

function expectClose(freq: number[], expected: number[]): void {
  expect(freq).toHaveLength(expected.length)
  freq.forEach((f, i) => {
    expect(Math.abs(f - (expected[i] as number)), `token ${i}: freq ${f} vs p ${expected[i]}`).toBeLessThan(
      FREQ_TOLERANCE,
    )
  })
}

describe('validateSamplingParams', () => {
  it.each<[string, SamplingParams]>([
    ['greedy', { temperature: 0 }],
    ['all set', { temperature: 0.8, topK: 40, topP: 0.95, seed: 0 }],
    ['bounds', { temperature: 100, topK: 1, topP: 1, seed: Number.MAX_SAFE_INTEGER }],
  ])('accepts %s', (_, p) => {
    expect(validateSamplingParams(p)).toBe(p)
  })

  it.each<[string, unknown]>([
    ['negative temperature', { temperature: -0.1 }],
    ['NaN temperature', { temperature: Number.NaN }],
    ['infinite temperature', { temperature: Number.POSITIVE_INFINITY }],
    ['temperature above 100', { temperature: 100.5 }],
    ['string temperature', { temperature: '1' }],
    ['missing temperature', {}],
    ['topK 0', { temperature: 1, topK: 0 }],
    ['topK negative', { temperature: 1, topK: -3 }],
    ['topK fractional', { temperature: 1, topK: 2.5 }],
    ['topK NaN', { temperature: 1, topK: Number.NaN }],
    ['topP 0', { temperature: 1, topP: 0 }],
    ['topP above 1', { temperature: 1, topP: 1.01 }],
    ['topP negative', { temperature: 1, topP: -0.5 }],
    ['topP NaN', { temperature: 1, topP: Number.NaN }],
    ['seed negative', { temperature: 1, seed: -1 }],
    ['seed fractional', { temperature: 1, seed: 1.5 }],
    ['seed unsafe', { temperature: 1, seed: 2 ** 53 }],
    ['not an object', null],
  ])('rejects %s', (_, p) => {
    let caught: unknown
    try {
      validateSamplingParams(p as SamplingParams)
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(SamplingError)
    expect((caught as SamplingError).code).toBe('ERR_SAMPLING_PARAMS')
    expect(() => new Sampler(p as SamplingParams)).toThrow(SamplingError)
  })

  it('greedy decoding divides logits by 1', () => {
    expect(logitTemperature({ temperature: 0 })).toBe(1)
    expect(logitTemperature({ temperature: 0.7 })).toBe(0.7)
  })
})

describe('topKFromLogits', () => {
  it('returns the k largest logits, ties in id order, with logSumExp over the whole vocabulary', () => {
    const logits = new Float32Array([1, 3, 3, 2, Number.NEGATIVE_INFINITY, 3])
    const top = topKFromLogits(logits, 4, 1)
    expect(Array.from(top.values)).toEqual([3, 3, 3, 2])
    expect(Array.from(top.ids)).toEqual([1, 2, 5, 3])
    const lse = Math.log(Math.E + 3 * Math.exp(3) + Math.exp(2))
    expect(Math.abs(top.logSumExp - lse)).toBeLessThan(1e-12)
  })

  it('computes logSumExp at the temperature, and at 1 for greedy', () => {
    const half = topKFromLogits(LOGITS, 2, 0.5)
    const expected = Math.log(Array.from(LOGITS).reduce((a, v) => a + Math.exp(v / 0.5), 0))
    expect(Math.abs(half.logSumExp - expected)).toBeLessThan(1e-12)
    expect(topKFromLogits(LOGITS, 2, 0).logSumExp).toBe(topKFromLogits(LOGITS, 2, 1).logSumExp)
  })

  it('clamps k to the vocabulary and sorts everything', () => {
    const top = topKFromLogits(LOGITS, 100, 1)
    expect(Array.from(top.ids)).toEqual([2, 7, 4, 0, 3, 6, 1, 5])
    expect(top.values).toBeInstanceOf(Float32Array)
    expect(top.ids).toBeInstanceOf(Int32Array)
  })

  it('agrees with a sort on a larger random vocabulary', () => {
    const logits = new Float32Array(5000)
    const rng = new Xoshiro128ss(3)
    for (let i = 0; i < logits.length; i++) logits[i] = Math.round(rng.nextFloat64() * 200) / 10 // many ties
    const top = topKFromLogits(logits, 64, 0.9)
    const order = Array.from(logits.keys()).sort(
      (a, b) => (logits[b] as number) - (logits[a] as number) || a - b,
    )
    expect(Array.from(top.ids)).toEqual(order.slice(0, 64))
  })

  it.each<[string, Float32Array, number, number]>([
    ['empty logits', new Float32Array(0), 1, 1],
    ['NaN logit', new Float32Array([0, Number.NaN]), 1, 1],
    ['+Infinity logit', new Float32Array([0, Number.POSITIVE_INFINITY]), 1, 1],
    ['all -Infinity', new Float32Array([Number.NEGATIVE_INFINITY]), 1, 1],
    ['k = 0', LOGITS, 0, 1],
    ['k fractional', LOGITS, 1.5, 1],
    ['negative temperature', LOGITS, 1, -1],
    ['NaN temperature', LOGITS, 1, Number.NaN],
  ])('rejects %s', (_, logits, k, t) => {
    expect(() => topKFromLogits(logits, k, t)).toThrow(SamplingError)
  })
})

describe('Sampler', () => {
  it('greedy returns the first candidate whatever the seed or logSumExp', () => {
    const top: TopKLogits = {
      values: new Float32Array([2, 2, 1]),
      ids: new Int32Array([9, 4, 7]),
      logSumExp: Number.NaN,
    }
    for (const seed of [0, 1, 99]) {
      const sampler = new Sampler({ temperature: 0, topP: 0.5, seed })
      for (let i = 0; i < 20; i++) expect(sampler.sample(top)).toBe(9)
    }
  })

  it('topK = 1 and a tiny topP both equal greedy', () => {
    const top = topKFromLogits(LOGITS, 8, 1.5)
    const greedy = new Sampler({ temperature: 0 }).sample(topKFromLogits(LOGITS, 8, 0))
    expect(greedy).toBe(2)
    for (const params of [
      { temperature: 1.5, topK: 1 },
      { temperature: 1.5, topP: 1e-9 },
    ]) {
      for (const seed of [1, 2, 3]) {
        const sampler = new Sampler({ ...params, seed })
        for (let i = 0; i < 200; i++) expect(sampler.sample(top)).toBe(greedy)
        expect(sampler.truncatedMass).toBe(0)
      }
    }
  })

  it('is deterministic for a seed and differs across seeds', () => {
    const top = topKFromLogits(LOGITS, 8, 2)
    const draw = (seed: number) => {
      const sampler = new Sampler({ temperature: 2, seed })
      return Array.from({ length: 200 }, () => sampler.sample(top))
    }
    expect(draw(1234)).toEqual(draw(1234))
    expect(draw(1234)).not.toEqual(draw(1235))
    expect(draw(2 ** 40)).not.toEqual(draw(0))
    expect(new Sampler({ temperature: 1, seed: 5 }).seed).toBe(5)
    const unseeded = new Sampler({ temperature: 1 })
    expect(Number.isSafeInteger(unseeded.seed)).toBe(true)
  })

  it('pins the draws for a seed so generations replay across releases', () => {
    const sampler = new Sampler({ temperature: 1.2, topP: 0.9, seed: 2024 })
    const top = topKFromLogits(LOGITS, 8, 1.2)
    expect(Array.from({ length: 12 }, () => sampler.sample(top))).toEqual(PINNED_DRAWS)
  })

  it('samples the temperature distribution', () => {
    const t = 0.7
    const sampler = new Sampler({ temperature: t, seed: 11 })
    expectClose(frequencies(sampler, topKFromLogits(LOGITS, 8, t), 8), softmax(LOGITS, t))
    expect(sampler.truncatedMass).toBeLessThan(1e-12)
  })

  it('samples top-k renormalised', () => {
    const p = softmax(LOGITS, 1)
    const sampler = new Sampler({ temperature: 1, topK: 3, seed: 12 })
    expectClose(
      frequencies(sampler, topKFromLogits(LOGITS, 8, 1), 8),
      restrict(p, idsByProbability(p).slice(0, 3)),
    )
    expect(sampler.truncatedMass).toBe(0)
  })

  it('samples the top-p nucleus renormalised', () => {
    const t = 1.3
    const p = softmax(LOGITS, t)
    const order = idsByProbability(p)
    let cum = 0
    const nucleus: number[] = []
    for (const id of order) {
      nucleus.push(id)
      cum += p[id] as number
      if (cum >= 0.6) break
    }
    expect(nucleus.length).toBeGreaterThan(1)
    expect(nucleus.length).toBeLessThan(8)
    const sampler = new Sampler({ temperature: t, topP: 0.6, seed: 13 })
    expectClose(frequencies(sampler, topKFromLogits(LOGITS, 8, t), 8), restrict(p, nucleus))
    expect(sampler.truncatedMass).toBe(0)
  })

  it('samples among the candidates when k is too small, and reports the uncovered mass', () => {
    const p = softmax(LOGITS, 1)
    const top3 = idsByProbability(p).slice(0, 3)
    const covered = top3.reduce((a, i) => a + (p[i] as number), 0)
    const sampler = new Sampler({ temperature: 1, seed: 14 })
    const top = topKFromLogits(LOGITS, 3, 1)
    expectClose(frequencies(sampler, top, 8), restrict(p, top3))
    expect(Math.abs(sampler.truncatedMass - (1 - covered))).toBeLessThan(1e-6)

    const nucleus = new Sampler({ temperature: 1, topP: 0.95, seed: 15 })
    nucleus.sample(top)
    expect(Math.abs(nucleus.truncatedMass - (0.95 - covered))).toBeLessThan(1e-6)
    const satisfied = new Sampler({ temperature: 1, topP: 0.3, seed: 15 })
    satisfied.sample(top)
    expect(satisfied.truncatedMass).toBe(0)
    const wantsMore = new Sampler({ temperature: 1, topK: 5, seed: 15 })
    wantsMore.sample(top)
    expect(wantsMore.truncatedMass).toBeGreaterThan(0)
  })

  it('never picks a -Infinity candidate', () => {
    const top: TopKLogits = {
      values: new Float32Array([0, Number.NEGATIVE_INFINITY]),
      ids: new Int32Array([3, 4]),
      logSumExp: 0,
    }
    const sampler = new Sampler({ temperature: 1, seed: 1 })
    for (let i = 0; i < 500; i++) expect(sampler.sample(top)).toBe(3)
  })

  const ok = topKFromLogits(LOGITS, 4, 1)
  it.each<[string, TopKLogits]>([
    ['empty', { values: new Float32Array(0), ids: new Int32Array(0), logSumExp: 0 }],
    ['length mismatch', { ...ok, ids: new Int32Array(3) }],
    ['plain arrays', { ...ok, values: [3, 2] as unknown as Float32Array }],
    ['NaN value', { ...ok, values: new Float32Array([3, Number.NaN, 1, 0]) }],
    ['unsorted values', { ...ok, values: new Float32Array([1, 3, 0, 0]) }],
    ['negative id', { ...ok, ids: new Int32Array([2, -1, 4, 0]) }],
    ['NaN logSumExp', { ...ok, logSumExp: Number.NaN }],
    ['infinite logSumExp', { ...ok, logSumExp: Number.POSITIVE_INFINITY }],
    ['logSumExp below the top logit', { ...ok, logSumExp: 2 }],
    ['logSumExp far too large', { ...ok, logSumExp: 1e6 }],
  ])('rejects malformed top-k logits: %s', (_, top) => {
    expect(() => new Sampler({ temperature: 1, seed: 1 }).sample(top)).toThrow(SamplingError)
  })
})

// An independent BigInt implementation: checks the 32-bit integer arithmetic bit for bit.
const M = 0xffffffffn
const rotlB = (x: bigint, k: number) => ((x << BigInt(k)) | (x >> BigInt(32 - k))) & M
function refSplitmix32(seed: bigint): () => bigint {
  let s = seed & M
  return () => {
    s = (s + 0x9e3779b9n) & M
    let z = s
    z = ((z ^ (z >> 16n)) * 0x21f0aaadn) & M
    z = ((z ^ (z >> 15n)) * 0x735a2d97n) & M
    return z ^ (z >> 15n)
  }
}
function refXoshiro(state: bigint[]): () => bigint {
  let [s0, s1, s2, s3] = state as [bigint, bigint, bigint, bigint]
  return () => {
    const result = (rotlB((s1 * 5n) & M, 7) * 9n) & M
    const t = (s1 << 9n) & M
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = rotlB(s3, 11)
    return result
  }
}

describe('Xoshiro128ss', () => {
  it('the reference reproduces the published xoshiro128** stream for state {1, 2, 3, 4}', () => {
    const ref = refXoshiro([1n, 2n, 3n, 4n])
    expect([ref(), ref(), ref()]).toEqual([11520n, 0n, 5927040n])
  })

  it.each([[0], [1], [42], [0xffffffff], [2 ** 32], [Number.MAX_SAFE_INTEGER]])(
    'matches the reference for seed %s',
    (seed) => {
      const lo = refSplitmix32(BigInt(seed) & M)
      const hi = refSplitmix32((BigInt(seed) >> 32n) ^ 0x6a09e667n)
      const ref = refXoshiro([lo(), lo(), hi(), hi()])
      const rng = new Xoshiro128ss(seed)
      for (let i = 0; i < 1000; i++) expect(rng.nextUint32()).toBe(Number(ref()))
    },
  )

  it('pins the stream for seed 42 so draws stay reproducible across releases', () => {
    const rng = new Xoshiro128ss(42)
    expect([rng.nextUint32(), rng.nextUint32(), rng.nextUint32()]).toEqual(PINNED_SEED_42)
  })

  it('gives uniform floats in [0, 1)', () => {
    const rng = new Xoshiro128ss(7)
    let sum = 0
    for (let i = 0; i < DRAWS; i++) {
      const u = rng.nextFloat64()
      expect(u >= 0 && u < 1).toBe(true)
      sum += u
    }
    expect(Math.abs(sum / DRAWS - 0.5)).toBeLessThan(0.01)
  })

  it.each([[-1], [0.5], [2 ** 53]])('rejects seed %s', (seed) => {
    expect(() => new Xoshiro128ss(seed)).toThrow(SamplingError)
  })
})

const PINNED_DRAWS = [4, 7, 7, 2, 7, 2, 0, 3, 4, 0, 2, 7]
const PINNED_SEED_42 = [660444221, 4103611620, 1730111635]
