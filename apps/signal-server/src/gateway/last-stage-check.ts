import type { NumericClass, TokenRows } from '@butterfly/core'

/**
 * How far an honest last stage's logits may lie from the exact ones on the calibration input,
 * relative to max(1, |logit|): fp32 peers agree with float64 to ~1e-6 and fp16-weight ones to
 * ~1e-3 (the bench's comparator figures and verify/calibration-bounds.ts), so these leave a wide
 * margin for honest peers while a lie in the candidates' values (noise, another row's, zeros) is
 * orders of magnitude larger.
 */
export function logitCap(cls: NumericClass): number {
  return cls.endsWith('/fp32') ? 1e-3 : 5e-2
}

/**
 * Why a last stage's answer on the calibration input (its token rows) is wrong, or undefined when
 * it is right: every row's first choice must be the exact argmax (or within the cap of it), and
 * its logit and log-sum-exp within the cap of the exact ones.
 */
export function lastStageMismatch(
  rows: TokenRows | undefined,
  exact: readonly Float32Array[],
  cls: NumericClass,
): string | undefined {
  if (rows === undefined || rows.seqLen !== exact.length) return 'no candidates for every position'
  const cap = logitCap(cls)
  for (let i = 0; i < exact.length; i++) {
    const ref = exact[i] as Float32Array
    let max = Number.NEGATIVE_INFINITY
    let sum = 0
    for (const v of ref) max = Math.max(max, v)
    for (const v of ref) sum += Math.exp(v - max)
    const lse = max + Math.log(sum)
    const id = rows.ids[2 * i] as number
    const value = rows.values[2 * i] as number
    const at = ref[id]
    const near = (a: number, b: number) => Math.abs(a - b) <= cap * Math.max(1, Math.abs(b))
    if (at === undefined) return `row ${i}: token ${id} is outside the vocabulary`
    if (!near(at, max)) return `row ${i}: first choice ${id} is not the exact argmax`
    if (!near(value, at)) return `row ${i}: logit ${value} where the exact one is ${at}`
    if (!near(rows.logSumExp[i] as number, lse)) return `row ${i}: log-sum-exp far from the exact one`
  }
  return undefined
}
