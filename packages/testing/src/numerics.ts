/**
 * max |actual - expected| / max |expected|: the error relative to the scale of the expected values
 * (logits, weights), as every numeric comparison in the suites states its tolerance. Arrays of
 * different lengths are infinitely far apart, so a shape bug can never pass.
 */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Number.POSITIVE_INFINITY
  let maxDiff = 0
  let scale = 0
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs((actual[i] as number) - (expected[i] as number)))
    scale = Math.max(scale, Math.abs(expected[i] as number))
  }
  return maxDiff / Math.max(scale, 1e-12)
}

/** The index of the largest value (the first one on a tie), as greedy decoding picks it. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < values.length; i++) if ((values[i] as number) > (values[best] as number)) best = i
  return best
}
