import { VerifyError } from '../errors.js'
import {
  type FingerprintRow,
  type HiddenFingerprint,
  MAX_FINGERPRINT_K,
  MAX_FINGERPRINT_ROWS,
  MAX_SKETCH_SIZE,
  validateFingerprint,
} from './fingerprint.js'

/**
 * Binary form of a HiddenFingerprint, little-endian:
 *
 *   0  'B' 'F' 'P'  magic
 *   3  u8   version (2)
 *   4  u8   k, u8 sketch size m, u16 row count
 *   8  u32  seqLen, u32 hiddenSize, u32 challenge
 *  20  rows: u32 position, f32 norm, k x u16 index, k x f32 value, m x f32 sketch
 *
 * A row is 8 + 6k + 4m bytes: 168 with the defaults (k = m = 16), so a default fingerprint of one
 * decoding position is 188 bytes and one of a full 512-row window 86,036. Version 1 had a u8 row
 * count (at most 16 rows) and is refused.
 */

export const FINGERPRINT_VERSION = 2
const MAGIC = [0x42, 0x46, 0x50] as const
const HEADER_BYTES = 20

function rowBytes(k: number, m: number): number {
  return 8 + 6 * k + 4 * m
}

/**
 * The largest valid fingerprint: MAX_FINGERPRINT_ROWS rows at the largest k and sketch, 233,492
 * bytes. The wire's own MAX_FINGERPRINT_BYTES (wire/validate-message.ts) is computed the same way.
 */
export const MAX_FINGERPRINT_BYTES =
  HEADER_BYTES + MAX_FINGERPRINT_ROWS * rowBytes(MAX_FINGERPRINT_K, MAX_SKETCH_SIZE)

export function encodeFingerprint(fp: HiddenFingerprint): Uint8Array {
  validateFingerprint(fp)
  const m = (fp.rows[0] as FingerprintRow).sketch.length
  const size = HEADER_BYTES + fp.rows.length * rowBytes(fp.k, m)
  if (size > MAX_FINGERPRINT_BYTES) {
    throw new VerifyError(
      'ERR_FINGERPRINT_TOO_LARGE',
      `fingerprint of ${size} bytes exceeds ${MAX_FINGERPRINT_BYTES}`,
    )
  }
  const out = new Uint8Array(size)
  const dv = new DataView(out.buffer)
  out.set(MAGIC, 0)
  dv.setUint8(3, FINGERPRINT_VERSION)
  dv.setUint8(4, fp.k)
  dv.setUint8(5, m)
  dv.setUint16(6, fp.rows.length, true)
  dv.setUint32(8, fp.seqLen, true)
  dv.setUint32(12, fp.hiddenSize, true)
  dv.setUint32(16, fp.challenge, true)
  let o = HEADER_BYTES
  for (const row of fp.rows) {
    dv.setUint32(o, row.position, true)
    dv.setFloat32(o + 4, row.norm, true)
    o += 8
    for (const i of row.indices) {
      dv.setUint16(o, i, true)
      o += 2
    }
    for (const v of row.values) {
      dv.setFloat32(o, v, true)
      o += 4
    }
    for (const s of row.sketch) {
      dv.setFloat32(o, s, true)
      o += 4
    }
  }
  return out
}

/** Parses and validates bytes from a peer. Throws VerifyError ERR_FINGERPRINT_* on anything off. */
export function decodeFingerprint(bytes: Uint8Array): HiddenFingerprint {
  if (!(bytes instanceof Uint8Array))
    throw new VerifyError('ERR_VERIFY_INPUT', 'fingerprint must be a Uint8Array')
  if (bytes.length > MAX_FINGERPRINT_BYTES) {
    throw new VerifyError(
      'ERR_FINGERPRINT_TOO_LARGE',
      `fingerprint of ${bytes.length} bytes exceeds ${MAX_FINGERPRINT_BYTES}`,
    )
  }
  if (bytes.length < 4)
    throw new VerifyError('ERR_FINGERPRINT_TRUNCATED', `fingerprint is only ${bytes.length} bytes`)
  if (bytes[0] !== MAGIC[0] || bytes[1] !== MAGIC[1] || bytes[2] !== MAGIC[2]) {
    throw new VerifyError('ERR_FINGERPRINT_MAGIC', 'bytes are not a fingerprint (bad magic)')
  }
  if (bytes[3] !== FINGERPRINT_VERSION) {
    throw new VerifyError('ERR_FINGERPRINT_VERSION', `unsupported fingerprint version ${bytes[3]}`)
  }
  if (bytes.length < HEADER_BYTES) {
    throw new VerifyError('ERR_FINGERPRINT_TRUNCATED', `fingerprint header needs ${HEADER_BYTES} bytes`)
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const k = dv.getUint8(4)
  const m = dv.getUint8(5)
  const count = dv.getUint16(6, true)
  if (count > MAX_FINGERPRINT_ROWS) {
    throw new VerifyError(
      'ERR_FINGERPRINT_FIELD',
      `fingerprint has ${count} rows, over ${MAX_FINGERPRINT_ROWS}`,
    )
  }
  const expected = HEADER_BYTES + count * rowBytes(k, m)
  if (bytes.length < expected) {
    throw new VerifyError(
      'ERR_FINGERPRINT_TRUNCATED',
      `fingerprint needs ${expected} bytes for ${count} rows, got ${bytes.length}`,
    )
  }
  if (bytes.length > expected) {
    throw new VerifyError(
      'ERR_FINGERPRINT_FIELD',
      `fingerprint has ${bytes.length - expected} trailing bytes`,
    )
  }
  const rows: FingerprintRow[] = []
  let o = HEADER_BYTES
  for (let r = 0; r < count; r++) {
    const position = dv.getUint32(o, true)
    const norm = dv.getFloat32(o + 4, true)
    o += 8
    const indices = new Uint16Array(k)
    for (let i = 0; i < k; i++, o += 2) indices[i] = dv.getUint16(o, true)
    const values = new Float32Array(k)
    for (let i = 0; i < k; i++, o += 4) values[i] = dv.getFloat32(o, true)
    const sketch = new Float32Array(m)
    for (let j = 0; j < m; j++, o += 4) sketch[j] = dv.getFloat32(o, true)
    rows.push({ position, norm, indices, values, sketch })
  }
  return validateFingerprint({
    seqLen: dv.getUint32(8, true),
    hiddenSize: dv.getUint32(12, true),
    k,
    challenge: dv.getUint32(16, true),
    rows,
  })
}

/** Encoded size in bytes, without encoding. */
export function fingerprintByteLength(fp: HiddenFingerprint): number {
  const m = fp.rows[0]?.sketch.length ?? 0
  return HEADER_BYTES + fp.rows.length * rowBytes(fp.k, m)
}
