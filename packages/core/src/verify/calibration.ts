import { VerifyError } from '../errors.js'
import { relativeDeviation } from './compare-hidden.js'
import { FINGERPRINT_K, sharedIndexFraction, topKAbsIndices } from './fingerprint.js'
import {
  DEFAULT_INDEX_OVERLAP,
  isNumericClass,
  type NumericClass,
  type ToleranceEntry,
  ToleranceTable,
} from './tolerance.js'

/**
 * Tolerances from measurement: every peer computes the same known input when it joins, and the
 * coordinator compares each class's outputs with a reference and with each other.
 *
 * For classes a and b (a may equal b):
 *   observed(a, a) = max(deviation of a's samples from the reference, spread among them)
 *   observed(a, b) = max(deviation between a's and b's samples, observed(a, a), observed(b, b))
 *   relative       = max(floor, safetyFactor x observed)
 *   indexOverlap   = clamp(worst observed top-k overlap - 0.25, 0.5, 0.75)
 * A class calibrated from one sample cannot show its spread, so its deviation from the reference
 * stands in for it: two members can each be that far from the truth. Since the samples come from
 * untrusted peers, one that deviates from the reference by more than `maxDeviation` is rejected
 * rather than allowed to loosen its class's tolerance; a class with no accepted sample gets no
 * entry, and its peers cannot be verified.
 */

export interface CalibrationSample {
  readonly cls: NumericClass
  /** Output for the calibration input, same shape as the reference. */
  readonly hidden: Float32Array
  readonly peerId?: string
}

export interface CalibrationOptions {
  readonly hiddenSize: number
  /** Default 4. */
  readonly safetyFactor?: number
  /** Smallest relative tolerance, default 1e-4 (covers summation-order noise of fp32). */
  readonly floor?: number
  /** Samples further than this from the reference are rejected; default 0.05. */
  readonly maxDeviation?: number
  /** Passed on to the ToleranceTable; default 2. */
  readonly homogeneityRatio?: number
  /** k for the top-k overlap measurement; default 16. */
  readonly k?: number
}

export interface RejectedSample {
  readonly index: number
  readonly cls: string
  readonly peerId?: string
  readonly reason: string
}

export interface ObservedDeviation {
  readonly a: NumericClass
  readonly b: NumericClass
  readonly deviation: number
  readonly overlap: number
  readonly samples: number
}

export interface Calibration {
  readonly table: ToleranceTable
  readonly rejected: RejectedSample[]
  readonly observed: ObservedDeviation[]
}

/** Pairwise comparisons per class are capped so calibration stays O(classes^2), not O(peers^2). */
const PAIRWISE_PER_CLASS = 8
const OVERLAP_SLACK = 0.25
const MIN_INDEX_OVERLAP = 0.5

interface Measured {
  readonly hidden: Float32Array
  readonly topk: Uint16Array[]
  readonly deviation: number
  readonly overlap: number
}

function option(value: number | undefined, fallback: number, name: string, atLeastOne = false): number {
  const v = value ?? fallback
  if (!(typeof v === 'number' && Number.isFinite(v) && (atLeastOne ? v >= 1 : v > 0))) {
    throw new VerifyError(
      'ERR_VERIFY_INPUT',
      `${name} must be a finite number ${atLeastOne ? '>= 1' : '> 0'}`,
    )
  }
  return v
}

function rowTopK(hidden: Float32Array, hiddenSize: number, k: number): Uint16Array[] {
  const rows: Uint16Array[] = []
  for (let off = 0; off < hidden.length; off += hiddenSize)
    rows.push(topKAbsIndices(hidden, off, hiddenSize, k))
  return rows
}

function overlapOf(a: Uint16Array[], b: Uint16Array[]): number {
  let worst = 1
  for (let r = 0; r < a.length; r++) {
    worst = Math.min(worst, sharedIndexFraction(a[r] as Uint16Array, b[r] as Uint16Array))
  }
  return worst
}

export function calibrate(
  samples: ReadonlyArray<CalibrationSample>,
  reference: Float32Array,
  options: CalibrationOptions,
): Calibration {
  const { hiddenSize } = options
  if (!(Number.isInteger(hiddenSize) && hiddenSize >= 1)) {
    throw new VerifyError(
      'ERR_VERIFY_INPUT',
      `hiddenSize must be a positive integer, got ${String(hiddenSize)}`,
    )
  }
  const safety = option(options.safetyFactor, 4, 'safetyFactor', true)
  const floor = option(options.floor, 1e-4, 'floor')
  const maxDeviation = option(options.maxDeviation, 0.05, 'maxDeviation')
  const k = Math.min(options.k ?? FINGERPRINT_K, hiddenSize)
  if (!(Number.isInteger(k) && k >= 1))
    throw new VerifyError('ERR_VERIFY_INPUT', 'k must be a positive integer')
  if (!(reference instanceof Float32Array) || reference.length === 0 || reference.length % hiddenSize !== 0) {
    throw new VerifyError(
      'ERR_VERIFY_INPUT',
      `reference must be a non-empty Float32Array of rows of ${hiddenSize}`,
    )
  }
  if (!reference.every(Number.isFinite))
    throw new VerifyError('ERR_VERIFY_INPUT', 'reference has non-finite values')
  if (!Array.isArray(samples)) throw new VerifyError('ERR_VERIFY_INPUT', 'samples must be an array')

  const refTopK = rowTopK(reference, hiddenSize, k)
  const byClass = new Map<NumericClass, Measured[]>()
  const rejected: RejectedSample[] = []
  /** The sample's measurements, or why it is rejected. */
  const measure = (s: Partial<CalibrationSample>): string | { cls: NumericClass; measured: Measured } => {
    if (!isNumericClass(s.cls)) return 'not a numeric class'
    const hidden = s.hidden
    if (!(hidden instanceof Float32Array) || hidden.length !== reference.length) return 'wrong shape'
    const deviation = relativeDeviation(hidden, reference, hiddenSize)
    if (!Number.isFinite(deviation)) return 'non-finite values'
    if (deviation > maxDeviation) return `deviates ${deviation.toExponential(2)} from the reference`
    const topk = rowTopK(hidden, hiddenSize, k)
    return { cls: s.cls, measured: { hidden, topk, deviation, overlap: overlapOf(topk, refTopK) } }
  }
  samples.forEach((sample, index) => {
    const s = (typeof sample === 'object' && sample !== null ? sample : {}) as Partial<CalibrationSample>
    const judged = measure(s)
    if (typeof judged === 'string') {
      const peer = typeof s.peerId === 'string' ? { peerId: s.peerId } : {}
      rejected.push({ index, cls: String(s.cls).slice(0, 80), ...peer, reason: judged })
      return
    }
    const list = byClass.get(judged.cls) ?? []
    list.push(judged.measured)
    byClass.set(judged.cls, list)
  })

  const classes = [...byClass.keys()].sort()
  const within = new Map<NumericClass, { deviation: number; overlap: number }>()
  const observed: ObservedDeviation[] = []
  const entries: ToleranceEntry[] = []
  const entry = (a: NumericClass, b: NumericClass, deviation: number, overlap: number, n: number) => {
    observed.push({ a, b, deviation, overlap, samples: n })
    const indexOverlap = Math.max(MIN_INDEX_OVERLAP, Math.min(DEFAULT_INDEX_OVERLAP, overlap - OVERLAP_SLACK))
    entries.push({ a, b, tolerance: { relative: Math.max(floor, safety * deviation), indexOverlap } })
  }

  for (const cls of classes) {
    const list = byClass.get(cls) as Measured[]
    let deviation = Math.max(...list.map((m) => m.deviation))
    let overlap = Math.min(...list.map((m) => m.overlap))
    const head = list.slice(0, PAIRWISE_PER_CLASS)
    for (let i = 0; i < head.length; i++) {
      for (let j = i + 1; j < head.length; j++) {
        const x = head[i] as Measured
        const y = head[j] as Measured
        deviation = Math.max(deviation, relativeDeviation(x.hidden, y.hidden, hiddenSize))
        overlap = Math.min(overlap, overlapOf(x.topk, y.topk))
      }
    }
    within.set(cls, { deviation, overlap })
    entry(cls, cls, deviation, overlap, list.length)
  }

  for (let i = 0; i < classes.length; i++) {
    for (let j = i + 1; j < classes.length; j++) {
      const a = classes[i] as NumericClass
      const b = classes[j] as NumericClass
      const wa = within.get(a) as { deviation: number; overlap: number }
      const wb = within.get(b) as { deviation: number; overlap: number }
      let deviation = Math.max(wa.deviation, wb.deviation)
      let overlap = Math.min(wa.overlap, wb.overlap)
      const la = (byClass.get(a) as Measured[]).slice(0, PAIRWISE_PER_CLASS)
      const lb = (byClass.get(b) as Measured[]).slice(0, PAIRWISE_PER_CLASS)
      for (const x of la) {
        for (const y of lb) {
          deviation = Math.max(deviation, relativeDeviation(x.hidden, y.hidden, hiddenSize))
          overlap = Math.min(overlap, overlapOf(x.topk, y.topk))
        }
      }
      entry(a, b, deviation, overlap, la.length + lb.length)
    }
  }

  const table = new ToleranceTable(
    entries,
    options.homogeneityRatio === undefined ? {} : { homogeneityRatio: options.homogeneityRatio },
  )
  return { table, rejected, observed }
}
