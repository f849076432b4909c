import type { NumericClass } from './tolerance.js'

/**
 * How far from the exact (float64) answer an honest sample of each numeric class may lie at
 * calibration. Calibration samples come from untrusted peers, so a liar that lies only on the
 * calibration input must neither pass nor loosen its class's tolerance.
 *
 * Measured worst-row relative L2 deviation of the calibration input (calibrationTokens, 8 rows)
 * from referenceBoundaries (float64), onnxruntime-node CPU, synthetic weights:
 *
 *   preset  layers    cpu/fp32   cpu/fp16w     webgpu/fp16 (simulated: residual rounded to fp16
 *   tiny    [0,1)     5.5e-7     1.36e-3                    after every layer, core test helper)
 *   tiny    [0,3)     1.1e-6     2.32e-3       1.5e-3
 *   tiny    [1,3)     4.1e-7     8.4e-4
 *   small   [0,4)     5.7e-7     7.7e-4
 *   10m     [0,7)     1.1e-6     1.31e-3       1.5e-3
 *   10m     [1,7)     6.9e-7     7.9e-4
 *   100m    [0,6)     1.1e-6     9.5e-4
 *   100m    [0,11)    1.2e-6     1.07e-3
 *
 * int4 models (dequantised weights in the reference), onnxruntime-node CPU, fp32 products against
 * int8 activations (--int4-compute int8, class cpu/int8a):
 *
 *   preset  layers    cpu/fp32   cpu/int8a
 *   tiny    [0,3)     8.3e-7     3.40e-2
 *   tiny    [1,3)     3.5e-7     1.24e-2
 *   10m     [0,7)     1.3e-6     1.99e-2
 *   10m     [1,7)     8.2e-7     1.38e-2
 *
 * Honest replicas of one class deviate alike (same rounding, only summation order differs, ~1e-6
 * relative), so the deviation's spread within a class is tiny next to its size.
 *
 * The rule: a sample of class c is rejected when its deviation exceeds
 *   bound(c) = min(cap(c), max(floor / safetyFactor, outlierFactor x lowerMedian(c)))
 * - cap(c): absolute, per class (CLASS_CAPS): fp32 1e-4 (~85x the worst measured, room for other
 *   CPUs, wasm and GPU fp32 kernels), fp16w 1e-2 (~4x the worst measured, room for deeper stages
 *   of real models), fp16 2e-2 (fp16 accumulation on GPUs), cuda/fp32 1e-2 (TF32 matmuls), int8a 5e-2
 *   (calibrate()'s default maxDeviation; ~1.5x the worst measured, so a deeper model's int8a stage
 *   may need a larger maxDeviation); a class
 *   with no cap gets `maxDeviation`. A class with one sample is bounded by its cap alone.
 * - lowerMedian(c): the lower median of the class's deviations under its cap; one liar among
 *   honest samples cannot move it up (with two samples it is the smaller one).
 * - outlierFactor 2: honest members deviate within a few percent of each other, a liar adding
 *   relative noise r to an honest output deviates ~sqrt(d^2 + r^2), i.e. r = 0.005 on fp16w's 2e-3
 *   is 2.7x the median.
 * - floor / safetyFactor: a sample closer than this cannot lift its tolerance above the floor, so
 *   it is harmless whatever the median (bit-exact samples give a median of 0).
 * The tolerances then use the (lower) median too, not the worst sample.
 */
export const CLASS_CAPS: Readonly<Record<string, number>> = {
  fp32: 1e-4,
  fp16w: 1e-2,
  fp16: 2e-2,
  // int8 activations (MatMulNBits accuracy level 4): per-block rounding of every product's input.
  int8a: 5e-2,
  'cuda/fp32': 1e-2,
}

export const DEFAULT_OUTLIER_FACTOR = 2

/** The cap of `cls`: by full class name, then by its precision, else `fallback`. */
export function classCap(
  cls: NumericClass,
  fallback: number,
  caps: Readonly<Record<string, number>> = CLASS_CAPS,
): number {
  const precision = cls.slice(cls.indexOf('/') + 1)
  const own = Object.hasOwn(caps, cls)
    ? caps[cls]
    : Object.hasOwn(caps, precision)
      ? caps[precision]
      : undefined
  return own === undefined ? fallback : Math.min(own, fallback)
}

/** Element floor((n - 1) / 2) of the ascending order: a single high outlier never raises it. */
export function lowerMedian(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? Number.NaN
}

/** Element floor((n - 1) / 2) of the descending order: a single low outlier never lowers it. */
export function upperMedian(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => b - a)
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? Number.NaN
}
