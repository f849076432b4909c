import { Xoshiro128ss } from '../base/rng.js'
import { VerifyError } from '../errors.js'
import { MAX_HIDDEN_SIZE, MAX_SEQ_LEN } from '../wire/validate-message.js'

/**
 * TOPLOC-style fingerprints of a stage's hidden states. One replica (the primary) ships the full
 * [seqLen x hiddenSize] output; the others ship a fingerprint of theirs, 168 bytes a row
 * whatever the hidden size, which the coordinator checks against the primary's full state.
 *
 * Each fingerprinted row carries:
 * - the indices of its k largest |values| and those values: cheap, catches gross lies;
 * - its L2 norm;
 * - a sketch: projections onto m pseudo-random ±1 vectors keyed by (challenge, position). For a
 *   deviation d independent of the vectors, E[(v·d)^2] = |d|^2, so the sketch estimates the row's
 *   L2 deviation, which catches lies that keep the top-k and the norm intact. The coordinator
 *   gives each fingerprinting replica its own random challenge and never shows it to the
 *   primary, so a lying primary cannot shape its lie to be invisible to the sketch.
 *
 * Rows covered: every row of the step, up to MAX_FINGERPRINT_ROWS. A step longer than that (a long
 * prefill) keeps its last FINGERPRINT_TAIL_ROWS rows (the ones decoding depends on most) plus
 * MAX_FINGERPRINT_ROWS - FINGERPRINT_TAIL_ROWS earlier rows drawn from the challenge, so a primary
 * that corrupts a prefill cannot know which of its rows will be checked. Covering every row of a
 * window lets the coordinator find the first position that disagrees (firstDisagreeingRow in
 * compare-hidden.ts), not only whether the step does.
 */

export const FINGERPRINT_K = 16
export const FINGERPRINT_TAIL_ROWS = 4
export const SKETCH_SIZE = 16
export const MAX_FINGERPRINT_K = 64
/**
 * Rows one fingerprint covers at most. It equals the longest window the coordinator replays as
 * one step (MAX_REPLAY_POSITIONS in mesh/replication/replica-set.ts, a layer above, which this
 * layer may not import), so a replayed window is fingerprinted row by row; change both together.
 */
export const MAX_FINGERPRINT_ROWS = 512
export const MAX_SKETCH_SIZE = 16

export interface FingerprintRow {
  /** Row index within the step, in [0, seqLen). */
  readonly position: number
  /** L2 norm of the row (rounded to f32). */
  readonly norm: number
  /** Indices of the k largest |values|, ascending. */
  readonly indices: Uint16Array
  /** The row's values at `indices`. */
  readonly values: Float32Array
  /** Projections onto ±1 vectors derived from (challenge, position). */
  readonly sketch: Float32Array
}

export interface HiddenFingerprint {
  readonly seqLen: number
  readonly hiddenSize: number
  readonly k: number
  /** u32 chosen by the coordinator; keys the sketch vectors and the sampled rows. */
  readonly challenge: number
  /** Ascending by position: fingerprintPositions(seqLen, challenge), every row up to 512. */
  readonly rows: readonly FingerprintRow[]
}

export interface FingerprintOptions {
  /** u32, default 0. */
  readonly challenge?: number
}

const POSITION_STREAM = 0xfffff // never a position (< 2^17), so its RNG stream is distinct

function inputError(message: string): VerifyError {
  return new VerifyError('ERR_VERIFY_INPUT', message)
}

function fieldError(message: string): VerifyError {
  return new VerifyError('ERR_FINGERPRINT_FIELD', message)
}

function isU32(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0xffffffff
}

/**
 * The row positions a fingerprint with this challenge covers, ascending: all of [0, seqLen) up
 * to MAX_FINGERPRINT_ROWS, else the tail plus earlier rows drawn from the challenge.
 */
export function fingerprintPositions(seqLen: number, challenge = 0): number[] {
  if (!(Number.isInteger(seqLen) && seqLen >= 1 && seqLen <= MAX_SEQ_LEN)) {
    throw inputError(`seqLen must be an integer in [1, ${MAX_SEQ_LEN}], got ${String(seqLen)}`)
  }
  if (!isU32(challenge)) throw inputError(`challenge must be a u32, got ${String(challenge)}`)
  if (seqLen <= MAX_FINGERPRINT_ROWS) return Array.from({ length: seqLen }, (_, p) => p)
  const earlier = seqLen - FINGERPRINT_TAIL_ROWS
  const want = MAX_FINGERPRINT_ROWS - FINGERPRINT_TAIL_ROWS
  // Floyd's sampling: `want` distinct positions of [0, earlier) in exactly `want` draws.
  const picked = new Set<number>()
  const rng = new Xoshiro128ss(challenge * 2 ** 20 + POSITION_STREAM)
  for (let j = earlier - want; j < earlier; j++) {
    const t = Math.floor(rng.nextFloat64() * (j + 1))
    picked.add(picked.has(t) ? j : t)
  }
  const positions = [...picked].sort((a, b) => a - b)
  for (let p = earlier; p < seqLen; p++) positions.push(p)
  return positions
}

/** L2 norm of hidden[off, off + n), accumulated in float64. */
export function rowNorm(hidden: Float32Array, off: number, n: number): number {
  let sum = 0
  for (let i = 0; i < n; i++) {
    const v = hidden[off + i] as number
    sum += v * v
  }
  return Math.sqrt(sum)
}

/**
 * Indices of the k largest |values| of hidden[off, off + n), ascending. Ties keep the lower
 * index, so every honest replica with bit-identical rows picks the same set.
 */
export function topKAbsIndices(hidden: Float32Array, off: number, n: number, k: number): Uint16Array {
  const kk = Math.min(k, n)
  const mags = new Float64Array(kk)
  const idx = new Int32Array(kk)
  let count = 0
  for (let i = 0; i < n; i++) {
    const a = Math.abs(hidden[off + i] as number)
    if (count === kk && !(a > (mags[kk - 1] as number))) continue
    let j = count < kk ? count++ : kk - 1
    while (j > 0 && (mags[j - 1] as number) < a) {
      mags[j] = mags[j - 1] as number
      idx[j] = idx[j - 1] as number
      j--
    }
    mags[j] = a
    idx[j] = i
  }
  return Uint16Array.from(idx.subarray(0, count)).sort()
}

/** Fraction of `a`'s indices that are also in `b`; both ascending. */
export function sharedIndexFraction(a: Uint16Array, b: Uint16Array): number {
  let i = 0
  let j = 0
  let shared = 0
  while (i < a.length && j < b.length) {
    const x = a[i] as number
    const y = b[j] as number
    if (x === y) {
      shared++
      i++
      j++
    } else if (x < y) i++
    else j++
  }
  return a.length === 0 ? 1 : shared / a.length
}

/**
 * Projections of hidden[off, off + n) onto m vectors of ±1 drawn from (challenge, position).
 * Both the replica and the verifier derive the same vectors, so neither ships them.
 */
export function sketchRow(
  hidden: Float32Array,
  off: number,
  n: number,
  challenge: number,
  position: number,
  m: number,
): Float64Array {
  if (!(Number.isInteger(m) && m >= 1 && m <= 32))
    throw inputError(`sketch size must be in [1, 32], got ${m}`)
  const rng = new Xoshiro128ss(challenge * 2 ** 20 + position)
  // Bit j of element i's word picks +1 or -1 for projection j. Rather than m multiply-adds per
  // element, each element is added to one bucket per byte of its word; projection j is then the
  // sum of the buckets whose byte has bit j set (v·x = 2 * sum(+1 elements) - sum(all)), which
  // costs 256 per byte whatever the hidden size.
  const bytes = Math.ceil(m / 8)
  const buckets = new Float64Array(256 * bytes)
  let total = 0
  for (let i = 0; i < n; i++) {
    const x = hidden[off + i] as number
    const word = rng.nextUint32()
    total += x
    for (let b = 0; b < bytes; b++) {
      const at = 256 * b + ((word >>> (8 * b)) & 0xff)
      buckets[at] = (buckets[at] as number) + x
    }
  }
  const acc = new Float64Array(m)
  for (let j = 0; j < m; j++) {
    const base = 256 * (j >> 3)
    const bit = 1 << (j & 7)
    let plus = 0
    for (let v = 0; v < 256; v++) if ((v & bit) !== 0) plus += buckets[base + v] as number
    acc[j] = 2 * plus - total
  }
  return acc
}

/** Fingerprint of a replica's own output [seqLen x hiddenSize]. Throws on non-finite values. */
export function fingerprintHidden(
  hidden: Float32Array,
  seqLen: number,
  hiddenSize: number,
  k = FINGERPRINT_K,
  options: FingerprintOptions = {},
): HiddenFingerprint {
  if (!(hidden instanceof Float32Array)) throw inputError('hidden must be a Float32Array')
  if (!(Number.isInteger(hiddenSize) && hiddenSize >= 1 && hiddenSize <= MAX_HIDDEN_SIZE)) {
    throw inputError(`hiddenSize must be an integer in [1, ${MAX_HIDDEN_SIZE}], got ${String(hiddenSize)}`)
  }
  if (!(Number.isInteger(k) && k >= 1 && k <= MAX_FINGERPRINT_K)) {
    throw inputError(`k must be an integer in [1, ${MAX_FINGERPRINT_K}], got ${String(k)}`)
  }
  const challenge = options.challenge ?? 0
  const positions = fingerprintPositions(seqLen, challenge)
  if (hidden.length !== seqLen * hiddenSize) {
    throw inputError(`hidden has ${hidden.length} values, expected ${seqLen} x ${hiddenSize}`)
  }
  const kk = Math.min(k, hiddenSize)
  const rows = positions.map((position): FingerprintRow => {
    const off = position * hiddenSize
    const norm = rowNorm(hidden, off, hiddenSize)
    if (!Number.isFinite(norm)) throw inputError(`hidden row ${position} has a non-finite value`)
    const indices = topKAbsIndices(hidden, off, hiddenSize, kk)
    const values = new Float32Array(kk)
    for (let i = 0; i < kk; i++) values[i] = hidden[off + (indices[i] as number)] as number
    const sketch = Float32Array.from(sketchRow(hidden, off, hiddenSize, challenge, position, SKETCH_SIZE))
    return { position, norm: Math.fround(norm), indices, values, sketch }
  })
  return { seqLen, hiddenSize, k: kk, challenge, rows }
}

/**
 * Checks a fingerprint that came from a peer (decoded or handed over as an object): every field
 * in range and internally consistent. Throws VerifyError ERR_FINGERPRINT_FIELD.
 */
export function validateFingerprint(fp: unknown): HiddenFingerprint {
  if (typeof fp !== 'object' || fp === null) throw fieldError('fingerprint must be an object')
  const { seqLen, hiddenSize, k, challenge, rows } = fp as Record<string, unknown>
  if (!(Number.isInteger(seqLen) && (seqLen as number) >= 1 && (seqLen as number) <= MAX_SEQ_LEN)) {
    throw fieldError(`fingerprint seqLen must be an integer in [1, ${MAX_SEQ_LEN}], got ${String(seqLen)}`)
  }
  const h = hiddenSize as number
  if (!(Number.isInteger(h) && h >= 1 && h <= MAX_HIDDEN_SIZE)) {
    throw fieldError(`fingerprint hiddenSize must be an integer in [1, ${MAX_HIDDEN_SIZE}], got ${String(h)}`)
  }
  const kk = k as number
  if (!(Number.isInteger(kk) && kk >= 1 && kk <= Math.min(MAX_FINGERPRINT_K, h))) {
    throw fieldError(`fingerprint k must be an integer in [1, min(${MAX_FINGERPRINT_K}, hiddenSize)]`)
  }
  if (!isU32(challenge)) throw fieldError(`fingerprint challenge must be a u32, got ${String(challenge)}`)
  const n = seqLen as number
  // The rows are fixed by (seqLen, challenge): a replica cannot leave out the ones it lied on.
  const expected = fingerprintPositions(n, challenge)
  if (!Array.isArray(rows) || rows.length !== expected.length) {
    throw fieldError(`fingerprint needs min(${MAX_FINGERPRINT_ROWS}, seqLen) = ${expected.length} rows`)
  }
  let r = 0
  let m = -1
  for (const row of rows as unknown[]) {
    if (typeof row !== 'object' || row === null) throw fieldError('fingerprint row must be an object')
    const { position, norm, indices, values, sketch } = row as Record<string, unknown>
    const p = position as number
    if (p !== expected[r++]) {
      throw fieldError(`fingerprint row positions must be fingerprintPositions(${n}, challenge)`)
    }
    if (!(typeof norm === 'number' && Number.isFinite(norm) && norm >= 0)) {
      throw fieldError(`fingerprint row ${p}: norm must be finite and >= 0`)
    }
    if (!(indices instanceof Uint16Array && indices.length === kk)) {
      throw fieldError(`fingerprint row ${p}: indices must be a Uint16Array of k = ${kk}`)
    }
    if (!(values instanceof Float32Array && values.length === kk)) {
      throw fieldError(`fingerprint row ${p}: values must be a Float32Array of k = ${kk}`)
    }
    if (!(sketch instanceof Float32Array && sketch.length >= 1 && sketch.length <= MAX_SKETCH_SIZE)) {
      throw fieldError(`fingerprint row ${p}: sketch must be a Float32Array of 1..${MAX_SKETCH_SIZE}`)
    }
    if (m === -1) m = sketch.length
    else if (sketch.length !== m) throw fieldError('fingerprint rows have sketches of different sizes')
    let sumSq = 0
    for (let i = 0; i < kk; i++) {
      const index = indices[i] as number
      if (index >= h || (i > 0 && index <= (indices[i - 1] as number))) {
        throw fieldError(`fingerprint row ${p}: indices must be ascending and below hiddenSize ${h}`)
      }
      const v = values[i] as number
      if (!Number.isFinite(v)) throw fieldError(`fingerprint row ${p}: value ${i} is ${v}`)
      sumSq += v * v
    }
    // The norm covers the whole row, so it bounds the parts we were shown (f32 rounding aside).
    if (Math.sqrt(sumSq) > norm * (1 + 1e-5) + 1e-30) {
      throw fieldError(`fingerprint row ${p}: values exceed the row norm`)
    }
    const bound = Math.sqrt(h) * norm * (1 + 1e-5) + 1e-30
    for (let j = 0; j < sketch.length; j++) {
      const s = sketch[j] as number
      if (!(Number.isFinite(s) && Math.abs(s) <= bound)) {
        throw fieldError(`fingerprint row ${p}: sketch ${j} is ${s}, beyond sqrt(hiddenSize) x norm`)
      }
    }
  }
  return fp as HiddenFingerprint
}
