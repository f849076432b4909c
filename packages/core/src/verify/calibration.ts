import { VerifyError } from '../errors.js'
import {
  CLASS_CAPS,
  classCap,
  DEFAULT_OUTLIER_FACTOR,
  lowerMedian,
  upperMedian,
} from './calibration-bounds.js'
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
 * The samples come from untrusted peers, one may lie on exactly this input. So, per class (the
 * rule and its measured constants: calibration-bounds.ts):
 *   a sample is rejected when its deviation from the reference exceeds
 *     min(cap(class), max(floor / safetyFactor, outlierFactor x lower median of the class))
 *   and from the accepted samples, with robust statistics (lower medians, not maxima):
 *   observed(a, a) = max(median deviation from the reference, median spread among them (3+))
 *   observed(a, b) = max(median deviation between a's and b's samples, observed(a, a), observed(b, b))
 *   relative       = max(floor, safetyFactor x observed)
 *   indexOverlap   = clamp(median observed top-k overlap - 0.25, 0.5, 0.75)
 * A class calibrated from one sample cannot show its spread, so its deviation from the reference
 * stands in for it, bounded by the class's cap; a class with no accepted sample gets no entry,
 * and its peers cannot be verified.
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
  /**
   * The cap of classes CLASS_CAPS does not name, and the most any class may deviate from the
   * reference; default 0.05.
   */
  readonly maxDeviation?: number
  /** Per-class caps on the deviation from the reference (by class or precision); CLASS_CAPS. */
  readonly classCaps?: Readonly<Record<string, number>>
  /** Samples further than this x their class's median deviation are rejected; default 2. */
  readonly outlierFactor?: number
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
  const outlier = option(options.outlierFactor, DEFAULT_OUTLIER_FACTOR, 'outlierFactor', true)
  const caps = options.classCaps ?? CLASS_CAPS
  for (const v of Object.values(caps)) option(v, 1, 'classCaps values')
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
  const candidates = new Map<NumericClass, Array<{ index: number; peer: { peerId?: string }; m: Measured }>>()
  const rejected: RejectedSample[] = []
  /** The sample's measurements, or why it is rejected. */
  const measure = (s: Partial<CalibrationSample>): string | { cls: NumericClass; measured: Measured } => {
    if (!isNumericClass(s.cls)) return 'not a numeric class'
    const hidden = s.hidden
    if (!(hidden instanceof Float32Array) || hidden.length !== reference.length) return 'wrong shape'
    const deviation = relativeDeviation(hidden, reference, hiddenSize)
    if (!Number.isFinite(deviation)) return 'non-finite values'
    const cap = classCap(s.cls, maxDeviation, caps)
    if (deviation > cap) {
      return `deviates ${deviation.toExponential(2)} from the reference, over its class's cap ${cap.toExponential(2)}`
    }
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
    const list = candidates.get(judged.cls) ?? []
    list.push({ index, peer: typeof s.peerId === 'string' ? { peerId: s.peerId } : {}, m: judged.measured })
    candidates.set(judged.cls, list)
  })
  // Far from what the class honestly produces: over outlierFactor x its lower median.
  const byClass = new Map<NumericClass, Measured[]>()
  for (const [cls, list] of candidates) {
    const median = lowerMedian(list.map((x) => x.m.deviation))
    const bound = Math.max(floor / safety, outlier * median)
    const kept: Measured[] = []
    for (const x of list) {
      if (x.m.deviation <= bound) kept.push(x.m)
      else {
        const reason = `deviates ${x.m.deviation.toExponential(2)} from the reference, over ${outlier}x its class's median ${median.toExponential(2)}`
        rejected.push({ index: x.index, cls, ...x.peer, reason })
      }
    }
    byClass.set(cls, kept)
  }
  rejected.sort((a, b) => a.index - b.index)

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
    let deviation = lowerMedian(list.map((m) => m.deviation))
    let overlap = upperMedian(list.map((m) => m.overlap))
    const head = list.slice(0, PAIRWISE_PER_CLASS)
    if (head.length >= 3) {
      // Each sample's median distance to the others; their median ignores one odd sample.
      const spread = head.map((x) => {
        const others = head.filter((y) => y !== x)
        return {
          deviation: lowerMedian(others.map((y) => relativeDeviation(x.hidden, y.hidden, hiddenSize))),
          overlap: upperMedian(others.map((y) => overlapOf(x.topk, y.topk))),
        }
      })
      deviation = Math.max(deviation, lowerMedian(spread.map((x) => x.deviation)))
      overlap = Math.min(overlap, upperMedian(spread.map((x) => x.overlap)))
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
      const la = (byClass.get(a) as Measured[]).slice(0, PAIRWISE_PER_CLASS)
      const lb = (byClass.get(b) as Measured[]).slice(0, PAIRWISE_PER_CLASS)
      const pairs = la.flatMap((x) => lb.map((y) => [x, y] as const))
      const deviation = Math.max(
        wa.deviation,
        wb.deviation,
        lowerMedian(pairs.map(([x, y]) => relativeDeviation(x.hidden, y.hidden, hiddenSize))),
      )
      const overlap = Math.min(
        wa.overlap,
        wb.overlap,
        upperMedian(pairs.map(([x, y]) => overlapOf(x.topk, y.topk))),
      )
      entry(a, b, deviation, overlap, la.length + lb.length)
    }
  }

  const table = new ToleranceTable(
    entries,
    options.homogeneityRatio === undefined ? {} : { homogeneityRatio: options.homogeneityRatio },
  )
  return { table, rejected, observed }
}
