import type { Rng } from '../src/rng.js'

export function randomArray(n: number, rng: Rng, scale = 1): Float64Array {
  const a = new Float64Array(n)
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale
  return a
}

/**
 * Largest |analytic - numeric| / max(1, |numeric|) over every entry of `x`, with central
 * differences of `loss` in float64 (step 1e-6 gives about 1e-9 truncation + rounding error).
 */
export function maxGradError(x: Float64Array, analytic: Float64Array, loss: () => number, h = 1e-6): number {
  let worst = 0
  for (let i = 0; i < x.length; i++) {
    const keep = x[i] as number
    x[i] = keep + h
    const up = loss()
    x[i] = keep - h
    const down = loss()
    x[i] = keep
    const numeric = (up - down) / (2 * h)
    worst = Math.max(worst, Math.abs((analytic[i] as number) - numeric) / Math.max(1, Math.abs(numeric)))
  }
  return worst
}

/** sum(out * weights): a scalar whose gradient with respect to `out` is `weights`. */
export function weightedSum(out: ArrayLike<number>, weights: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < weights.length; i++) s += (out[i] as number) * (weights[i] as number)
  return s
}
