import { type RowTopK, type TopKLogits, Xoshiro128ss } from '@butterfly/core'

/**
 * The well-formed lies FaultyStage tells: finite values, the honest output's shape, top-k lists
 * still sorted by value. Test-only.
 */

/** Standard normal draws from `next` (uniform [0, 1)), Box-Muller. */
export function gaussian(next: () => number): number {
  const u = Math.max(next(), 1e-12)
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next())
}

function rms(x: Float32Array, off = 0, n = x.length): number {
  let sum = 0
  for (let i = off; i < off + n; i++) sum += (x[i] as number) ** 2
  return Math.sqrt(sum / Math.max(1, n))
}

/** x plus Gaussian noise of `noise` x x's RMS, drawn from `next` (a running RNG). */
export function noisy(x: Float32Array, noise: number, next: () => number): Float32Array {
  const scale = noise * rms(x)
  return x.map((v) => v + scale * gaussian(next))
}

/** Top-k values with noise, re-sorted so the list stays well-formed. */
export function noisyTopK(t: TopKLogits, noise: number, next: () => number): TopKLogits {
  const values = noisy(t.values, noise, next)
  const order = [...values.keys()].sort((a, b) => (values[b] as number) - (values[a] as number))
  return {
    values: Float32Array.from(order, (i) => values[i] as number),
    ids: Int32Array.from(order, (i) => t.ids[i] as number),
    logSumExp: t.logSumExp + 1,
  }
}

/** A seed for (seed, position): the same for every colluder, whatever each has served before. */
function keyed(seed: number, position: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(position + 1, 0xc2b2ae35)
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d)
  return (h ^ (h >>> 15)) >>> 0
}

/**
 * Colluders' hidden lie: each row (absolute position startPos + r) plus noise of `noise` x the
 * row's RMS keyed by (seed, position), so two colluders with one seed agree bit for bit.
 */
export function colludingHidden(
  x: Float32Array,
  seqLen: number,
  startPos: number,
  noise: number,
  seed: number,
): Float32Array {
  const h = x.length / seqLen
  const out = new Float32Array(x.length)
  for (let r = 0; r < seqLen; r++) {
    const rng = new Xoshiro128ss(keyed(seed, startPos + r))
    const next = () => rng.nextFloat64()
    const scale = noise * rms(x, r * h, h)
    for (let i = r * h; i < (r + 1) * h; i++) out[i] = (x[i] as number) + scale * gaussian(next)
  }
  return out
}

/** Colluders' token lie: the top-1 and top-2 candidates swap names, values stay sorted. */
export function colludingTopK(t: TopKLogits): TopKLogits {
  const ids = Int32Array.from(t.ids)
  if (ids.length >= 2) {
    ids[0] = t.ids[1] as number
    ids[1] = t.ids[0] as number
  }
  return { values: Float32Array.from(t.values), ids, logSumExp: t.logSumExp }
}

/** The top-k of each row of a last stage's all-rows answer, and back. */
export function splitRows(r: RowTopK): TopKLogits[] {
  return Array.from({ length: r.rows }, (_, i) => ({
    values: r.values.slice(i * r.k, (i + 1) * r.k),
    ids: r.ids.slice(i * r.k, (i + 1) * r.k),
    logSumExp: r.logSumExp[i] as number,
  }))
}

export function joinRows(rows: readonly TopKLogits[]): RowTopK {
  const k = rows[0]?.values.length ?? 0
  const values = new Float32Array(rows.length * k)
  const ids = new Int32Array(rows.length * k)
  const logSumExp = new Float32Array(rows.length)
  rows.forEach((t, i) => {
    values.set(t.values.subarray(0, k), i * k)
    ids.set(t.ids.subarray(0, k), i * k)
    logSumExp[i] = t.logSumExp
  })
  return { rows: rows.length, k, values, ids, logSumExp }
}

/** A zeroed top-k that still names distinct tokens 0..k-1 (well-formed, and wrong). */
export function zeroTopK(k: number): TopKLogits {
  return { values: new Float32Array(k), ids: Int32Array.from({ length: k }, (_, i) => i), logSumExp: 0 }
}
