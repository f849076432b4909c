import type { RowTopK } from '../base/top-k-logits.js'
import { VerifyError } from '../errors.js'

/**
 * The last stage's fingerprint: it has no hidden output to fingerprint, so a replica replaying a
 * window answers with, per position, its two best candidates and the log-sum-exp. The coordinator
 * checks the primary's chosen token at each position against them (tokenAgrees) to find the first
 * position where the two disagree.
 *
 * Binary form, little-endian, 4-byte aligned:
 *
 *   0  'B' 'T' 'R'  magic (the hidden-state fingerprint's is 'B' 'F' 'P': one never parses as the other)
 *   3  u8   version (1)
 *   4  u32  seqLen
 *   8  rows: i32 id1, i32 id2, f32 value1, f32 value2, f32 logSumExp
 *
 * 20 bytes a position; at most MAX_TOKEN_ROWS positions, so at most 10,248 bytes.
 */

export interface TokenRows {
  readonly seqLen: number
  /** [seqLen * 2]: per position the best and second-best token id. */
  readonly ids: Int32Array
  /** [seqLen * 2]: their logits, each pair descending. */
  readonly values: Float32Array
  /** [seqLen]. */
  readonly logSumExp: Float32Array
}

/** Positions token rows cover at most: the longest replayed window, as MAX_FINGERPRINT_ROWS. */
export const MAX_TOKEN_ROWS = 512
export const TOKEN_ROWS_VERSION = 1
const MAGIC = [0x42, 0x54, 0x52] as const
const HEADER_BYTES = 8
const ROW_BYTES = 20
export const MAX_TOKEN_ROWS_BYTES = HEADER_BYTES + MAX_TOKEN_ROWS * ROW_BYTES

/**
 * A merged replay sums in a different order than the primary's single-position steps, which
 * moves logits by a few float32 ulps of their magnitude (~1e-6 relative); 1e-4 leaves ample room
 * for that and is still far below any gap a sampler or a liar could exploit.
 */
export const DEFAULT_TIE_TOLERANCE = 1e-4

function fieldError(message: string): VerifyError {
  return new VerifyError('ERR_FINGERPRINT_FIELD', `token rows: ${message}`)
}

/** The top-2 of each row of a step's candidates. Throws ERR_VERIFY_INPUT on a malformed RowTopK. */
export function tokenRowsOf(rowTopk: RowTopK): TokenRows {
  const { rows, k, values, ids, logSumExp } = rowTopk
  if (
    !(Number.isInteger(rows) && rows >= 1 && Number.isInteger(k) && k >= 2) ||
    !(values instanceof Float32Array && values.length === rows * k) ||
    !(ids instanceof Int32Array && ids.length === rows * k) ||
    !(logSumExp instanceof Float32Array && logSumExp.length === rows)
  ) {
    throw new VerifyError('ERR_VERIFY_INPUT', 'row candidates need rows >= 1, k >= 2 and matching arrays')
  }
  const out = { seqLen: rows, ids: new Int32Array(2 * rows), values: new Float32Array(2 * rows) }
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < 2; j++) {
      out.ids[2 * r + j] = ids[r * k + j] as number
      out.values[2 * r + j] = values[r * k + j] as number
    }
  }
  return validateTokenRows({ ...out, logSumExp: Float32Array.from(logSumExp) })
}

/** Checks token rows from a peer: sizes, finite values, descending pairs, distinct non-negative ids. */
export function validateTokenRows(rows: unknown): TokenRows {
  if (typeof rows !== 'object' || rows === null) throw fieldError('must be an object')
  const { seqLen, ids, values, logSumExp } = rows as Record<string, unknown>
  const n = seqLen as number
  if (!(Number.isInteger(n) && n >= 1 && n <= MAX_TOKEN_ROWS)) {
    throw fieldError(`seqLen must be an integer in [1, ${MAX_TOKEN_ROWS}], got ${String(seqLen)}`)
  }
  if (!(ids instanceof Int32Array && ids.length === 2 * n))
    throw fieldError(`ids must be an Int32Array of ${2 * n}`)
  if (!(values instanceof Float32Array && values.length === 2 * n)) {
    throw fieldError(`values must be a Float32Array of ${2 * n}`)
  }
  if (!(logSumExp instanceof Float32Array && logSumExp.length === n)) {
    throw fieldError(`logSumExp must be a Float32Array of ${n}`)
  }
  for (let r = 0; r < n; r++) {
    const [a, b] = [ids[2 * r] as number, ids[2 * r + 1] as number]
    const [v1, v2] = [values[2 * r] as number, values[2 * r + 1] as number]
    const lse = logSumExp[r] as number
    if (a < 0 || b < 0 || a === b) throw fieldError(`row ${r}: ids must be distinct and non-negative`)
    if (!(Number.isFinite(v1) && Number.isFinite(v2) && Number.isFinite(lse))) {
      throw fieldError(`row ${r}: values and logSumExp must be finite`)
    }
    if (!(v1 >= v2)) throw fieldError(`row ${r}: values must be descending`)
  }
  return rows as TokenRows
}

export function encodeTokenRows(rows: TokenRows): Uint8Array {
  validateTokenRows(rows)
  const out = new Uint8Array(HEADER_BYTES + rows.seqLen * ROW_BYTES)
  const dv = new DataView(out.buffer)
  out.set(MAGIC, 0)
  dv.setUint8(3, TOKEN_ROWS_VERSION)
  dv.setUint32(4, rows.seqLen, true)
  for (let r = 0, o = HEADER_BYTES; r < rows.seqLen; r++, o += ROW_BYTES) {
    dv.setInt32(o, rows.ids[2 * r] as number, true)
    dv.setInt32(o + 4, rows.ids[2 * r + 1] as number, true)
    dv.setFloat32(o + 8, rows.values[2 * r] as number, true)
    dv.setFloat32(o + 12, rows.values[2 * r + 1] as number, true)
    dv.setFloat32(o + 16, rows.logSumExp[r] as number, true)
  }
  return out
}

/** Parses and validates bytes from a peer. Throws VerifyError ERR_FINGERPRINT_* on anything off. */
export function decodeTokenRows(bytes: Uint8Array): TokenRows {
  if (!(bytes instanceof Uint8Array))
    throw new VerifyError('ERR_VERIFY_INPUT', 'token rows must be a Uint8Array')
  if (bytes.length > MAX_TOKEN_ROWS_BYTES) {
    throw new VerifyError(
      'ERR_FINGERPRINT_TOO_LARGE',
      `token rows of ${bytes.length} bytes exceed ${MAX_TOKEN_ROWS_BYTES}`,
    )
  }
  if (bytes.length < 4)
    throw new VerifyError('ERR_FINGERPRINT_TRUNCATED', `token rows are only ${bytes.length} bytes`)
  if (bytes[0] !== MAGIC[0] || bytes[1] !== MAGIC[1] || bytes[2] !== MAGIC[2]) {
    throw new VerifyError('ERR_FINGERPRINT_MAGIC', 'bytes are not token rows (bad magic)')
  }
  if (bytes[3] !== TOKEN_ROWS_VERSION) {
    throw new VerifyError('ERR_FINGERPRINT_VERSION', `unsupported token rows version ${bytes[3]}`)
  }
  if (bytes.length < HEADER_BYTES) {
    throw new VerifyError('ERR_FINGERPRINT_TRUNCATED', `token rows header needs ${HEADER_BYTES} bytes`)
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const seqLen = dv.getUint32(4, true)
  if (seqLen < 1 || seqLen > MAX_TOKEN_ROWS)
    throw fieldError(`seqLen ${seqLen} is outside [1, ${MAX_TOKEN_ROWS}]`)
  const expected = HEADER_BYTES + seqLen * ROW_BYTES
  if (bytes.length < expected) {
    throw new VerifyError(
      'ERR_FINGERPRINT_TRUNCATED',
      `token rows need ${expected} bytes, got ${bytes.length}`,
    )
  }
  if (bytes.length > expected) throw fieldError(`${bytes.length - expected} trailing bytes`)
  const ids = new Int32Array(2 * seqLen)
  const values = new Float32Array(2 * seqLen)
  const logSumExp = new Float32Array(seqLen)
  for (let r = 0, o = HEADER_BYTES; r < seqLen; r++, o += ROW_BYTES) {
    ids[2 * r] = dv.getInt32(o, true)
    ids[2 * r + 1] = dv.getInt32(o + 4, true)
    values[2 * r] = dv.getFloat32(o + 8, true)
    values[2 * r + 1] = dv.getFloat32(o + 12, true)
    logSumExp[r] = dv.getFloat32(o + 16, true)
  }
  return validateTokenRows({ seqLen, ids, values, logSumExp })
}

/**
 * Whether the primary's chosen token at this position agrees with the replica's row: same
 * argmax, or a near-tie (|top1 - value of that token| <= tieTolerance * max(1, |top1|)) where
 * the replica's second choice is the primary's token. Greedy decoding picks the argmax, so an
 * honest primary's token is the replica's first choice unless the two best logits are within the
 * reordering noise of a merged replay (DEFAULT_TIE_TOLERANCE). `rows` must be valid
 * (decodeTokenRows / validateTokenRows); a position outside the rows throws ERR_VERIFY_INPUT.
 */
export function tokenAgrees(
  rows: TokenRows,
  position: number,
  token: number,
  tieTolerance = DEFAULT_TIE_TOLERANCE,
): boolean {
  if (!(Number.isInteger(position) && position >= 0 && position < rows.seqLen)) {
    throw new VerifyError('ERR_VERIFY_INPUT', `position ${position} is outside the ${rows.seqLen} token rows`)
  }
  if (!(Number.isFinite(tieTolerance) && tieTolerance >= 0)) {
    throw new VerifyError('ERR_VERIFY_INPUT', `tieTolerance must be finite and >= 0, got ${tieTolerance}`)
  }
  if (rows.ids[2 * position] === token) return true
  if (rows.ids[2 * position + 1] !== token) return false
  const top1 = rows.values[2 * position] as number
  const second = rows.values[2 * position + 1] as number
  return Math.abs(top1 - second) <= tieTolerance * Math.max(1, Math.abs(top1))
}
