import { describe, expect, it } from 'vitest'
import { LogitPenalties } from '../src/engine/logit-penalties.js'
import { Sampler, type SamplingParams, topKFromLogits } from '../src/engine/sampler.js'
import { SamplingError } from '../src/errors.js'

const LOGITS = new Float32Array([1.5, -0.25, 3, 0.75, 2.25, -1, 0, 2.5])
const LSE_TOLERANCE = 1e-6

/** OpenAI's formula over the whole vocabulary, independently of the code under test. */
function penalised(logits: Float32Array, seen: number[], frequency: number, presence: number): Float32Array {
  const out = Float32Array.from(logits)
  const counts = new Map<number, number>()
  for (const id of seen) counts.set(id, (counts.get(id) ?? 0) + 1)
  for (const [id, c] of counts) out[id] = (out[id] as number) - c * frequency - presence
  return out
}

describe('LogitPenalties', () => {
  it.each<[string, number, number, number[], number]>([
    ['presence only', 0, 1, [2, 2, 7], 1],
    ['frequency only', 0.4, 0, [2, 2, 2, 4], 0.6],
    ['both, negative frequency', -0.5, 0.3, [0, 2, 0], 1],
    ['both, at temperature 0 (computed at 1)', 1.5, 0.5, [7, 2, 7], 0],
  ])('%s: re-sorts and moves logSumExp exactly when the seen tokens are candidates', (_, f, p, seen, t) => {
    const penalties = new LogitPenalties(f, p)
    for (const id of seen) penalties.observe(id)
    const k = 5 // ids 2, 7, 4, 0, 3 — every seen id is among them
    const got = penalties.apply(topKFromLogits(LOGITS, k, t), t)
    const want = topKFromLogits(penalised(LOGITS, seen, f, p), k, t)
    // The last candidate may differ: a demoted candidate can fall below a token outside the top-k.
    expect(Array.from(got.ids).slice(0, k - 1)).toEqual(Array.from(want.ids).slice(0, k - 1))
    expect(Array.from(got.values).slice(0, k - 1)).toEqual(Array.from(want.values).slice(0, k - 1))
    expect(Math.abs(got.logSumExp - want.logSumExp)).toBeLessThan(LSE_TOLERANCE)
  })

  it('leaves the candidates as they are when nothing seen is among them', () => {
    const penalties = new LogitPenalties(2, 2)
    penalties.observe(5)
    const top = topKFromLogits(LOGITS, 3, 1)
    expect(penalties.apply(top, 1)).toBe(top)
  })
})

describe('logit bias', () => {
  it('adds the bias to the candidates it names, moving logSumExp exactly', () => {
    const bias = { 2: -100, 3: 2, 5: 50 } // 5 is not a candidate: a positive bias cannot raise it
    const penalties = new LogitPenalties(0, 0, bias)
    const got = penalties.apply(topKFromLogits(LOGITS, 5, 1), 1)
    const full = Float32Array.from(LOGITS)
    full[2] = (full[2] as number) - 100
    full[3] = (full[3] as number) + 2
    const want = topKFromLogits(full, 4, 1)
    expect(Array.from(got.ids).slice(0, 4)).toEqual(Array.from(want.ids))
    expect(Array.from(got.ids)).not.toContain(5)
    // logSumExp over the vocabulary with only the candidates' biases applied.
    const expected = Math.log(Array.from(full).reduce((acc, v) => acc + Math.exp(v), 0))
    expect(Math.abs(got.logSumExp - expected)).toBeLessThan(LSE_TOLERANCE)
  })

  it('bans the greedy token and promotes another, then combines with penalties', () => {
    const top = topKFromLogits(LOGITS, 8, 0)
    const banned = new Sampler({ temperature: 0, logitBias: { 2: -100 } })
    expect(banned.sample(top)).toBe(7)
    const promoted = new Sampler({ temperature: 0, logitBias: { 6: 5 }, frequencyPenalty: 2 })
    // 6 (0 + 5 = 5) wins, then 6 − 2 = 3 ties 2 (3.0): the lower id wins the tie, then 6 − 4 = 1.
    expect(Array.from({ length: 3 }, () => promoted.sample(top))).toEqual([6, 2, 6])
  })

  it.each<[string, unknown]>([
    ['a bias above 100', { 1: 101 }],
    ['a NaN bias', { 1: Number.NaN }],
    ['a non-integer id', { '1.5': 1 }],
    ['a negative id', { '-1': 1 }],
    ['not an object', 'x'],
  ])('rejects %s', (_, logitBias) => {
    expect(() => new Sampler({ temperature: 0, logitBias: logitBias as Record<number, number> })).toThrow(
      SamplingError,
    )
  })
})

describe('Sampler with penalties', () => {
  it('greedy moves off a token once its penalty exceeds the gap to the next candidate', () => {
    // Ids 2 (3.0), 7 (2.5), 4 (2.25). A frequency penalty of 0.6: 2 → 2.4 loses to 7; 7 → 1.9
    // hands it back to 2; 2 → 1.8 loses to 4. A presence penalty does not grow with the count.
    const top = topKFromLogits(LOGITS, 8, 0)
    const frequency = new Sampler({ temperature: 0, frequencyPenalty: 0.6 })
    expect(Array.from({ length: 4 }, () => frequency.sample(top))).toEqual([2, 7, 2, 4])
    const presence = new Sampler({ temperature: 0, presencePenalty: 0.6 })
    expect(Array.from({ length: 4 }, () => presence.sample(top))).toEqual([2, 7, 2, 2])
    const plain = new Sampler({ temperature: 0 })
    expect(Array.from({ length: 4 }, () => plain.sample(top))).toEqual([2, 2, 2, 2])
  })

  it('a negative penalty keeps greedy on a seen token', () => {
    const sampler = new Sampler({ temperature: 0, frequencyPenalty: -1 })
    const top = topKFromLogits(new Float32Array([1, 1.2, 0]), 3, 0)
    expect(Array.from({ length: 3 }, () => sampler.sample(top))).toEqual([1, 1, 1])
  })

  it.each<[string, SamplingParams]>([
    ['frequency above 2', { temperature: 1, frequencyPenalty: 2.5 }],
    ['presence below -2', { temperature: 1, presencePenalty: -2.01 }],
    ['NaN presence', { temperature: 1, presencePenalty: Number.NaN }],
    ['string frequency', { temperature: 1, frequencyPenalty: '1' as unknown as number }],
  ])('rejects %s', (_, p) => {
    expect(() => new Sampler(p)).toThrow(SamplingError)
  })
})

describe('Sampler with logSumExp at another temperature', () => {
  it('draws from the candidates renormalised at the sampling temperature', () => {
    const t = 0.7
    const k = 4
    const atOne = topKFromLogits(LOGITS, k, 1)
    const atT = topKFromLogits(LOGITS, k, t)
    // Same seed, same candidates: a draw renormalised over the candidates does not depend on
    // which temperature the producer's logSumExp was taken at.
    const a = new Sampler({ temperature: t, seed: 9 })
    const b = new Sampler({ temperature: t, seed: 9 })
    const drawsA = Array.from({ length: 300 }, () => a.sample(atOne, 1))
    const drawsB = Array.from({ length: 300 }, () => b.sample(atT))
    expect(drawsA).toEqual(drawsB)
    expect(new Set(drawsA).size).toBeGreaterThan(1)
  })
})
