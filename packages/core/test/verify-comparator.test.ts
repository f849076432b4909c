import { describe, expect, it } from 'vitest'
import { measureComparator } from '../src/verify/comparator-stats.js'
import { expectVerifyError } from './verify-helpers.js'

describe('measureComparator', () => {
  const stats = measureComparator({ hiddenSize: 512, seqLen: 2, trials: 25, seed: 7 })

  it('flags no honest replica and accepts no lie at 3x the tolerance or beyond', () => {
    expect(stats.honest.comparisons).toBeGreaterThan(100)
    expect(stats.falsePositiveRate).toBe(0)
    expect(stats.lies.comparisons).toBeGreaterThan(1000)
    expect(stats.falseNegativeRate).toBe(0)
  })

  it('covers every lie kind in every mode', () => {
    expect(Object.keys(stats.byLie).sort()).toEqual(
      [
        'forged-tail',
        'noise-100x',
        'noise-10x',
        'noise-3x',
        'other-layer',
        'random',
        'stale',
        'zeroed',
      ].sort(),
    )
    for (const count of Object.values(stats.byLie)) expect(count).toMatchObject({ errors: 0 })
    for (const count of Object.values(stats.byMode)) {
      expect(count.comparisons).toBe(stats.lies.comparisons / 3)
      expect(count.errors).toBe(0)
    }
  })

  it('shows where the sketch stops: lies below the tolerance are accepted, as they must be', () => {
    const s = measureComparator({ hiddenSize: 256, trials: 10, seed: 3, noiseMultiples: [0.2] })
    expect(s.byLie['noise-0.2x']?.errors).toBe(s.byLie['noise-0.2x']?.comparisons)
    expect(s.falsePositiveRate).toBe(0)
  })

  it('reports sizes, timings and the tolerances it calibrated', () => {
    expect(stats.fingerprintBytes).toBe(20 + 2 * 168)
    for (const us of Object.values(stats.micros)) expect(us).toBeGreaterThanOrEqual(0)
    const fp16w = stats.tolerances.find((t) => t.a === 'cpu/fp16w' && t.b === 'cpu/fp16w')
    expect(fp16w?.tolerance.relative).toBeGreaterThan(2e-3)
    expect(fp16w?.tolerance.relative).toBeLessThan(2e-2)
  })

  it('rejects bad options', () => {
    expectVerifyError(() => measureComparator({ hiddenSize: 8 }), 'ERR_VERIFY_INPUT')
    expectVerifyError(() => measureComparator({ trials: 0 }), 'ERR_VERIFY_INPUT')
    expectVerifyError(() => measureComparator({ classes: [] }), 'ERR_VERIFY_INPUT')
  })
})
