import { Xoshiro128ss } from '../base/rng.js'
import { VerifyError } from '../errors.js'
import { calibrate } from './calibration.js'
import { compareHidden, compareToFingerprint } from './compare-hidden.js'
import { FINGERPRINT_K, fingerprintHidden, topKAbsIndices } from './fingerprint.js'
import { fingerprintByteLength } from './fingerprint-codec.js'
import type { NumericClass, Tolerance } from './tolerance.js'

/**
 * How well the comparators separate honest replicas from liars, measured on synthetic hidden
 * states shaped like a transformer's residual stream: a component shared across steps with a few
 * outlier dimensions ("massive activations") plus a step-specific one. Each class's honest output
 * is the exact state plus noise of its relative size, partly proportional to each value (weight
 * rounding) and partly uniform. Tolerances come from `calibrate` on a separate input, as at join.
 *
 * Every lie is checked three ways: a lying primary's full state against an honest fingerprint, an
 * honest full state against the liar's fingerprint of its lie, and full against full.
 */

export interface ComparatorClassSpec {
  readonly cls: NumericClass
  /** Relative L2 deviation of this class's honest outputs from the exact state. */
  readonly noise: number
}

export interface ComparatorStatsOptions {
  readonly hiddenSize?: number
  readonly seqLen?: number
  readonly classes?: readonly ComparatorClassSpec[]
  readonly trials?: number
  readonly seed?: number
  /** Noise lies, as multiples of the pair's tolerance. */
  readonly noiseMultiples?: readonly number[]
  /** Calibration samples per class (peers of that class at join). */
  readonly calibrationSamples?: number
  /** Clock in ms for the timings; default Date.now (pass performance.now for precision). */
  readonly now?: () => number
}

export interface RateCount {
  comparisons: number
  /** Lies: accepted (false negatives). Honest: rejected (false positives). */
  errors: number
}

export interface ComparatorStats {
  readonly falsePositiveRate: number
  readonly falseNegativeRate: number
  readonly honest: RateCount
  readonly lies: RateCount
  readonly byLie: Record<string, RateCount>
  readonly byMode: Record<'primary-lies' | 'fingerprint-lies' | 'full-vs-full', RateCount>
  /** CPU time per call in microseconds. */
  readonly micros: { fingerprint: number; compareToFingerprint: number; compareHidden: number }
  readonly fingerprintBytes: number
  readonly tolerances: Array<{ a: NumericClass; b: NumericClass; tolerance: Tolerance }>
}

export const DEFAULT_COMPARATOR_CLASSES: readonly ComparatorClassSpec[] = [
  { cls: 'cpu/fp32', noise: 1e-6 },
  { cls: 'cpu/fp16w', noise: 2e-3 },
  { cls: 'webgpu/fp16', noise: 5e-3 },
]

class Gauss {
  private readonly rng: Xoshiro128ss
  constructor(seed: number) {
    this.rng = new Xoshiro128ss(seed)
  }
  uniform(): number {
    return this.rng.nextFloat64()
  }
  next(): number {
    const u = 1 - this.rng.nextFloat64()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.rng.nextFloat64())
  }
  u32(): number {
    return this.rng.nextUint32()
  }
}

function rowNorm(x: Float32Array, off: number, h: number): number {
  let s = 0
  for (let i = off; i < off + h; i++) s += (x[i] as number) ** 2
  return Math.sqrt(s)
}

/** x + a random deviation of relative L2 size `rel` per row; `shape` in [0, 1] weights it by |x_i|. */
function perturb(g: Gauss, x: Float32Array, h: number, rel: number, shape = 0.5): Float32Array {
  const out = new Float32Array(x.length)
  const d = new Float64Array(h)
  for (let off = 0; off < x.length; off += h) {
    const norm = rowNorm(x, off, h)
    const rms = norm / Math.sqrt(h)
    let dn = 0
    for (let i = 0; i < h; i++) {
      d[i] = g.next() * ((1 - shape) * rms + shape * Math.abs(x[off + i] as number))
      dn += (d[i] as number) ** 2
    }
    const scale = dn > 0 ? (rel * norm) / Math.sqrt(dn) : 0
    for (let i = 0; i < h; i++) out[off + i] = (x[off + i] as number) + (d[i] as number) * scale
  }
  return out
}

interface World {
  readonly base: Float32Array
  step(): Float32Array
}

function world(g: Gauss, seqLen: number, h: number): World {
  const base = new Float32Array(seqLen * h)
  const outliers = [0, 1].map(() => g.u32() % h)
  for (let off = 0; off < base.length; off += h) {
    for (let i = 0; i < h; i++) base[off + i] = g.next()
    for (const o of outliers) base[off + o] = 30 * (g.uniform() < 0.5 ? -1 : 1)
  }
  return {
    base,
    step() {
      const x = new Float32Array(base.length)
      for (let i = 0; i < x.length; i++) x[i] = (base[i] as number) + g.next()
      return x
    },
  }
}

type Lie = (honest: Float32Array, stale: Float32Array) => Float32Array

function lies(g: Gauss, h: number, k: number, multiples: readonly number[], tol: number): Map<string, Lie> {
  const m = new Map<string, Lie>()
  for (const x of multiples) m.set(`noise-${x}x`, (honest) => perturb(g, honest, h, x * tol, 0))
  m.set('zeroed', (honest) => new Float32Array(honest.length))
  m.set('stale', (_honest, stale) => stale)
  m.set('other-layer', (honest) => perturb(g, honest, h, 0.1, 0.3))
  m.set('random', (honest) => {
    const out = new Float32Array(honest.length)
    for (let off = 0; off < out.length; off += h) {
      for (let i = 0; i < h; i++) out[off + i] = g.next()
      const s = rowNorm(honest, off, h) / (rowNorm(out, off, h) || 1)
      for (let i = 0; i < h; i++) out[off + i] = (out[off + i] as number) * s
    }
    return out
  })
  // Keeps each row's top-k and its norm exactly, shuffles the rest: only the sketch can see it.
  m.set('forged-tail', (honest) => {
    const out = Float32Array.from(honest)
    for (let off = 0; off < out.length; off += h) {
      const keep = new Set(topKAbsIndices(honest, off, h, k))
      const rest = [...Array(h).keys()].filter((i) => !keep.has(i))
      for (let i = rest.length - 1; i > 0; i--) {
        const j = Math.floor(g.uniform() * (i + 1))
        const a = off + (rest[i] as number)
        const b = off + (rest[j] as number)
        const t = out[a] as number
        out[a] = out[b] as number
        out[b] = t
      }
    }
    return out
  })
  return m
}

export function measureComparator(options: ComparatorStatsOptions = {}): ComparatorStats {
  const h = options.hiddenSize ?? 2048
  const seqLen = options.seqLen ?? 1
  const classes = options.classes ?? DEFAULT_COMPARATOR_CLASSES
  const trials = options.trials ?? 100
  const multiples = options.noiseMultiples ?? [3, 10, 100]
  const calibrationSamples = options.calibrationSamples ?? 3
  const now = options.now ?? Date.now
  const ok = (n: number, min: number) => Number.isInteger(n) && n >= min
  if (
    !(
      ok(h, FINGERPRINT_K) &&
      ok(seqLen, 1) &&
      ok(trials, 1) &&
      ok(calibrationSamples, 1) &&
      classes.length > 0
    )
  ) {
    throw new VerifyError('ERR_VERIFY_INPUT', 'measureComparator: bad sizes, trial count or classes')
  }
  const g = new Gauss(options.seed ?? 1)
  const w = world(g, seqLen, h)

  const calInput = w.step()
  const samples = classes.flatMap(({ cls, noise }) =>
    Array.from({ length: calibrationSamples }, () => ({ cls, hidden: perturb(g, calInput, h, noise) })),
  )
  const { table } = calibrate(samples, calInput, { hiddenSize: h })

  const honest: RateCount = { comparisons: 0, errors: 0 }
  const liesCount: RateCount = { comparisons: 0, errors: 0 }
  const byLie: Record<string, RateCount> = {}
  const byMode: ComparatorStats['byMode'] = {
    'primary-lies': { comparisons: 0, errors: 0 },
    'fingerprint-lies': { comparisons: 0, errors: 0 },
    'full-vs-full': { comparisons: 0, errors: 0 },
  }
  const time = { fingerprint: [0, 0], compareToFingerprint: [0, 0], compareHidden: [0, 0] }
  const timed = <T>(what: keyof typeof time, fn: () => T): T => {
    const t0 = now()
    const r = fn()
    const slot = time[what]
    slot[0] = (slot[0] as number) + (now() - t0)
    slot[1] = (slot[1] as number) + 1
    return r
  }
  const fp = (x: Float32Array) =>
    timed('fingerprint', () => fingerprintHidden(x, seqLen, h, FINGERPRINT_K, { challenge: g.u32() }))
  const withFp = (full: Float32Array, of: Float32Array, tol: Tolerance) => {
    const f = fp(of)
    return timed('compareToFingerprint', () => compareToFingerprint(full, f, tol).agree)
  }
  const withFull = (a: Float32Array, b: Float32Array, tol: Tolerance) =>
    timed('compareHidden', () => compareHidden(a, b, h, tol).agree)
  const count = (c: RateCount, error: boolean) => {
    c.comparisons++
    if (error) c.errors++
  }
  let fingerprintBytes = 0

  let previous = w.step()
  for (let t = 0; t < trials; t++) {
    const exact = w.step()
    for (const a of classes) {
      for (const b of classes) {
        if (!table.homogeneous(a.cls, b.cls)) continue
        const tol = table.get(a.cls, b.cls)
        const honestA = perturb(g, exact, h, a.noise * (0.75 + 0.5 * g.uniform()))
        const honestB = perturb(g, exact, h, b.noise * (0.75 + 0.5 * g.uniform()))
        count(honest, !withFp(honestA, honestB, tol))
        count(honest, !withFull(honestA, honestB, tol))
        const stale = perturb(g, previous, h, a.noise)
        for (const [kind, lie] of lies(g, h, FINGERPRINT_K, multiples, tol.relative)) {
          const lied = lie(honestA, stale)
          const results: Array<[keyof typeof byMode, boolean]> = [
            ['primary-lies', withFp(lied, honestB, tol)],
            ['fingerprint-lies', withFp(honestB, lied, tol)],
            ['full-vs-full', withFull(lied, honestB, tol)],
          ]
          byLie[kind] ??= { comparisons: 0, errors: 0 }
          for (const [mode, accepted] of results) {
            count(liesCount, accepted)
            count(byMode[mode], accepted)
            count(byLie[kind], accepted)
          }
        }
      }
    }
    previous = exact
    if (t === 0) fingerprintBytes = fingerprintByteLength(fp(exact))
  }
  const micros = (what: keyof typeof time) => {
    const [total, n] = time[what] as [number, number]
    return n === 0 ? 0 : (1000 * total) / n
  }
  return {
    falsePositiveRate: honest.errors / Math.max(1, honest.comparisons),
    falseNegativeRate: liesCount.errors / Math.max(1, liesCount.comparisons),
    honest,
    lies: liesCount,
    byLie,
    byMode,
    micros: {
      fingerprint: micros('fingerprint'),
      compareToFingerprint: micros('compareToFingerprint'),
      compareHidden: micros('compareHidden'),
    },
    fingerprintBytes,
    tolerances: table.entries(),
  }
}
