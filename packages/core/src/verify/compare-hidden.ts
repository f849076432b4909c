import { VerifyError } from '../errors.js'
import {
  type FingerprintRow,
  type HiddenFingerprint,
  rowNorm,
  sharedIndexFraction,
  sketchRow,
  topKAbsIndices,
  validateFingerprint,
} from './fingerprint.js'
import { type Tolerance, validateTolerance } from './tolerance.js'

/**
 * Comparators. The metric throughout is the per-row relative L2 deviation
 *   dev(a, b) = |a_r - b_r| / max(|a_r|, |b_r|), worst row r,
 * which is scale-free, symmetric, and bounded by 1 for a zeroed row. A fingerprint cannot give it
 * exactly, but each of its checks is bounded by it: |norm(a) - norm(b)| <= |a - b| (triangle
 * inequality), |a_i - b_i| <= |a - b|, and the sketch's RMS estimates |a - b| (within
 * SKETCH_SLACK, see below). So an honest pair within the tolerance passes every check.
 *
 * Shapes that do not match are a disagreement (one of two peers is wrong), not an exception;
 * bad arguments from the caller (tolerance, hiddenSize, an unvalidated fingerprint) throw.
 */

/**
 * The sketch's mean of m = 16 squared projections is |d|^2 times chi^2_16 / 16; allowing 1.5x
 * the tolerance flags an honest pair at the tolerance itself with probability ~1e-3 and one at a
 * quarter of it (what the calibration's safety factor leaves) essentially never, while a lie at
 * 3x the tolerance passes with probability ~1e-3.
 */
export const SKETCH_SLACK = 1.5

export interface Comparison {
  readonly agree: boolean
  /** Worst check divided by its limit: <= 1 when the two agree; Infinity for unusable input. */
  readonly score: number
  /** Worst row's relative L2 deviation: exact for two full states, estimated with a fingerprint. */
  readonly deviation: number
  /** Smallest fraction of top-k indices shared by a compared row (fingerprint comparisons). */
  readonly overlap?: number
}

const MISMATCH: Comparison = {
  agree: false,
  score: Number.POSITIVE_INFINITY,
  deviation: Number.POSITIVE_INFINITY,
}

function checkHiddenSize(hiddenSize: number): void {
  if (!(Number.isInteger(hiddenSize) && hiddenSize >= 1)) {
    throw new VerifyError(
      'ERR_VERIFY_INPUT',
      `hiddenSize must be a positive integer, got ${String(hiddenSize)}`,
    )
  }
}

/**
 * Worst-row relative L2 deviation of two states of equal length (a multiple of hiddenSize);
 * NaN when either holds a non-finite value.
 */
export function relativeDeviation(a: Float32Array, b: Float32Array, hiddenSize: number): number {
  let worst = 0
  for (let off = 0; off < a.length; off += hiddenSize) {
    let sa = 0
    let sb = 0
    let sd = 0
    for (let i = off; i < off + hiddenSize; i++) {
      const x = a[i] as number
      const y = b[i] as number
      sa += x * x
      sb += y * y
      sd += (x - y) * (x - y)
    }
    const denom = Math.sqrt(Math.max(sa, sb))
    const dev = denom > 0 ? Math.sqrt(sd) / denom : sd === 0 ? 0 : Number.NaN
    if (!Number.isFinite(dev)) return Number.NaN
    worst = Math.max(worst, dev)
  }
  return worst
}

/** Two full states [seqLen x hiddenSize]: exact worst-row relative L2 deviation. */
export function compareHidden(
  a: Float32Array,
  b: Float32Array,
  hiddenSize: number,
  tol: Tolerance,
): Comparison {
  validateTolerance(tol)
  checkHiddenSize(hiddenSize)
  if (!(a instanceof Float32Array) || !(b instanceof Float32Array)) {
    throw new VerifyError('ERR_VERIFY_INPUT', 'hidden states must be Float32Arrays')
  }
  if (a.length !== b.length || a.length === 0 || a.length % hiddenSize !== 0) return MISMATCH
  const worst = relativeDeviation(a, b, hiddenSize)
  if (!Number.isFinite(worst)) return MISMATCH
  return { agree: worst <= tol.relative, score: worst / tol.relative, deviation: worst }
}

function overlapScore(overlap: number, min: number): number {
  if (min >= 1) return overlap >= 1 ? 0 : Number.POSITIVE_INFINITY
  return (1 - overlap) / (1 - min)
}

class Checks {
  deviation = 0
  score = 0
  overlap = 1
  agree = true

  /** `dev` must be at most `limit`; NaN fails. */
  add(dev: number, limit: number): void {
    if (!(dev <= limit)) this.agree = false
    const s = dev / limit
    if (!(s <= this.score)) this.score = Number.isNaN(s) ? Number.POSITIVE_INFINITY : s
    if (!(dev <= this.deviation)) this.deviation = Number.isNaN(dev) ? Number.POSITIVE_INFINITY : dev
  }

  addOverlap(overlap: number, min: number): void {
    if (!(overlap >= min)) this.agree = false
    this.overlap = Math.min(this.overlap, overlap)
    this.score = Math.max(this.score, overlapScore(overlap, min))
  }

  result(): Comparison {
    return { agree: this.agree, score: this.score, deviation: this.deviation, overlap: this.overlap }
  }
}

/**
 * A full state (usually the primary's) against another replica's fingerprint: for every
 * fingerprinted row, the top-k index sets must overlap by tol.indexOverlap, and the norm, the
 * values at the fingerprint's indices and the sketch must match within tol.relative (the sketch
 * within SKETCH_SLACK x). `fp` must be valid (decodeFingerprint / validateFingerprint).
 */
export function compareToFingerprint(full: Float32Array, fp: HiddenFingerprint, tol: Tolerance): Comparison {
  validateTolerance(tol)
  validateFingerprint(fp)
  if (!(full instanceof Float32Array))
    throw new VerifyError('ERR_VERIFY_INPUT', 'full state must be a Float32Array')
  const h = fp.hiddenSize
  if (full.length !== fp.seqLen * h) return MISMATCH
  const checks = new Checks()
  for (const row of fp.rows) {
    if (!checkRow(checks, full, row.position * h, fp, row, tol)) return MISMATCH
  }
  return checks.result()
}

/**
 * Adds one fingerprinted row's checks against full[off, off + hiddenSize) to `checks`; false when
 * the full row holds a non-finite value.
 */
function checkRow(
  checks: Checks,
  full: Float32Array,
  off: number,
  fp: HiddenFingerprint,
  row: FingerprintRow,
  tol: Tolerance,
): boolean {
  const h = fp.hiddenSize
  const norm = rowNorm(full, off, h)
  if (!Number.isFinite(norm)) return false
  const denom = Math.max(norm, row.norm) || 1
  checks.add(Math.abs(norm - row.norm) / denom, tol.relative)
  let worstValue = 0
  for (let i = 0; i < fp.k; i++) {
    const d = Math.abs((full[off + (row.indices[i] as number)] as number) - (row.values[i] as number))
    worstValue = Math.max(worstValue, d)
  }
  checks.add(worstValue / denom, tol.relative)
  const sketch = sketchRow(full, off, h, fp.challenge, row.position, row.sketch.length)
  let sumSq = 0
  for (let j = 0; j < sketch.length; j++) sumSq += ((sketch[j] as number) - (row.sketch[j] as number)) ** 2
  checks.add(Math.sqrt(sumSq / sketch.length) / denom, SKETCH_SLACK * tol.relative)
  checks.addOverlap(sharedIndexFraction(row.indices, topKAbsIndices(full, off, h, fp.k)), tol.indexOverlap)
  return true
}

function rowAgrees(
  full: Float32Array,
  off: number,
  fp: HiddenFingerprint,
  row: FingerprintRow,
  tol: Tolerance,
) {
  const checks = new Checks()
  return checkRow(checks, full, off, fp, row, tol) && checks.agree
}

/**
 * Whether one full row [hiddenSize] matches the fingerprint's row at `position` (same checks as
 * compareToFingerprint). False when the row has the wrong length or a non-finite value, or when
 * the fingerprint does not cover `position` (nothing to confirm it with).
 */
export function rowMatchesFingerprint(
  row: Float32Array,
  fp: HiddenFingerprint,
  position: number,
  tol: Tolerance,
): boolean {
  validateTolerance(tol)
  validateFingerprint(fp)
  if (!(row instanceof Float32Array)) throw new VerifyError('ERR_VERIFY_INPUT', 'row must be a Float32Array')
  if (row.length !== fp.hiddenSize) return false
  const fpRow = fp.rows.find((r) => r.position === position)
  return fpRow !== undefined && rowAgrees(row, 0, fp, fpRow, tol)
}

/**
 * The lowest position whose fingerprinted row disagrees with `full` [seqLen x hiddenSize], or -1
 * when every row agrees; a shape mismatch returns 0. A fingerprint covers every row of a step of
 * up to MAX_FINGERPRINT_ROWS (a replayed window), so there this is the first position at which
 * the two replicas diverge; beyond that, the first among the rows covered.
 */
export function firstDisagreeingRow(full: Float32Array, fp: HiddenFingerprint, tol: Tolerance): number {
  validateTolerance(tol)
  validateFingerprint(fp)
  if (!(full instanceof Float32Array))
    throw new VerifyError('ERR_VERIFY_INPUT', 'full state must be a Float32Array')
  const h = fp.hiddenSize
  if (full.length !== fp.seqLen * h) return 0
  for (const row of fp.rows) {
    if (!rowAgrees(full, row.position * h, fp, row, tol)) return row.position
  }
  return -1
}

/**
 * Two fingerprints of the same step, on the rows both cover (the tail rows always): top-k
 * overlap, norms, values at shared indices, and sketches when both used the same challenge.
 * Weaker than a full-state check; used to pick which peer to ask for a full state.
 */
export function compareFingerprints(a: HiddenFingerprint, b: HiddenFingerprint, tol: Tolerance): Comparison {
  validateTolerance(tol)
  validateFingerprint(a)
  validateFingerprint(b)
  if (a.seqLen !== b.seqLen || a.hiddenSize !== b.hiddenSize) return MISMATCH
  const byPosition = new Map<number, FingerprintRow>(b.rows.map((r) => [r.position, r]))
  const checks = new Checks()
  for (const ra of a.rows) {
    const rb = byPosition.get(ra.position)
    if (rb === undefined) continue
    const denom = Math.max(ra.norm, rb.norm) || 1
    checks.add(Math.abs(ra.norm - rb.norm) / denom, tol.relative)
    let worstValue = 0
    let i = 0
    let j = 0
    while (i < ra.indices.length && j < rb.indices.length) {
      const x = ra.indices[i] as number
      const y = rb.indices[j] as number
      if (x === y)
        worstValue = Math.max(worstValue, Math.abs((ra.values[i++] as number) - (rb.values[j++] as number)))
      else if (x < y) i++
      else j++
    }
    checks.add(worstValue / denom, tol.relative)
    if (a.challenge === b.challenge && ra.sketch.length === rb.sketch.length) {
      let sumSq = 0
      for (let s = 0; s < ra.sketch.length; s++)
        sumSq += ((ra.sketch[s] as number) - (rb.sketch[s] as number)) ** 2
      checks.add(Math.sqrt(sumSq / ra.sketch.length) / denom, SKETCH_SLACK * tol.relative)
    }
    const shorter = ra.indices.length <= rb.indices.length ? ra.indices : rb.indices
    const longer = shorter === ra.indices ? rb.indices : ra.indices
    checks.addOverlap(sharedIndexFraction(shorter, longer), tol.indexOverlap)
  }
  return checks.result()
}
