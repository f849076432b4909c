import { describe, expect, it } from 'vitest'
import { Xoshiro128ss } from '../src/base/rng.js'
import type { RowTopK } from '../src/base/top-k-logits.js'
import { VerifyError } from '../src/errors.js'
import { fingerprintHidden } from '../src/verify/fingerprint.js'
import { decodeFingerprint, encodeFingerprint } from '../src/verify/fingerprint-codec.js'
import {
  DEFAULT_TIE_TOLERANCE,
  decodeTokenRows,
  encodeTokenRows,
  MAX_TOKEN_ROWS,
  MAX_TOKEN_ROWS_BYTES,
  type TokenRows,
  tokenAgrees,
  tokenRowsOf,
  validateTokenRows,
} from '../src/verify/token-rows.js'
import { MAX_FINGERPRINT_BYTES } from '../src/wire/messages.js'

function expectVerifyError(fn: () => unknown, code: string): void {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(VerifyError)
    expect((err as VerifyError).code).toBe(code)
    return
  }
  throw new Error(`expected VerifyError ${code}, nothing was thrown`)
}

/** Random candidates of `rows` positions, k per row, each row descending. */
function rowTopk(rows: number, k: number, seed: number): RowTopK {
  const rng = new Xoshiro128ss(seed)
  const values = new Float32Array(rows * k)
  const ids = new Int32Array(rows * k)
  for (let r = 0; r < rows; r++) {
    let v = 10 * rng.nextFloat64()
    const used = new Set<number>()
    for (let j = 0; j < k; j++) {
      v -= rng.nextFloat64()
      values[r * k + j] = v
      let id = rng.nextUint32() % 1000
      while (used.has(id)) id = (id + 1) % 1000
      used.add(id)
      ids[r * k + j] = id
    }
  }
  return { rows, k, values, ids, logSumExp: Float32Array.from({ length: rows }, (_, r) => 12 + r) }
}

describe('tokenRowsOf / encodeTokenRows / decodeTokenRows', () => {
  const src = rowTopk(16, 8, 1)
  const rows = tokenRowsOf(src)
  const bytes = encodeTokenRows(rows)

  it('keeps the top-2 of every row and the logSumExp', () => {
    expect(rows.seqLen).toBe(16)
    for (let r = 0; r < 16; r++) {
      expect(rows.ids[2 * r]).toBe(src.ids[8 * r])
      expect(rows.ids[2 * r + 1]).toBe(src.ids[8 * r + 1])
      expect(rows.values[2 * r]).toBe(src.values[8 * r])
      expect(rows.values[2 * r + 1]).toBe(src.values[8 * r + 1])
      expect(rows.logSumExp[r]).toBe(src.logSumExp[r])
    }
  })

  it('round-trips exactly in 8 + 20 x seqLen bytes, up to 512 rows', () => {
    expect(bytes.length).toBe(8 + 20 * 16)
    expect(decodeTokenRows(bytes)).toEqual(rows)
    const padded = new Uint8Array(bytes.length + 5)
    padded.set(bytes, 1)
    expect(decodeTokenRows(padded.subarray(1, 1 + bytes.length))).toEqual(rows)
    const full = tokenRowsOf(rowTopk(MAX_TOKEN_ROWS, 2, 2))
    expect(encodeTokenRows(full).length).toBe(MAX_TOKEN_ROWS_BYTES)
    expect(MAX_TOKEN_ROWS_BYTES).toBe(8 + 512 * 20)
    expect(MAX_TOKEN_ROWS_BYTES).toBeLessThanOrEqual(MAX_FINGERPRINT_BYTES)
    expect(decodeTokenRows(encodeTokenRows(full))).toEqual(full)
  })

  it('is never parsed as a hidden-state fingerprint, nor one as token rows', () => {
    expectVerifyError(() => decodeFingerprint(bytes), 'ERR_FINGERPRINT_MAGIC')
    const fp = encodeFingerprint(fingerprintHidden(new Float32Array(64).fill(1), 4, 16))
    expectVerifyError(() => decodeTokenRows(fp), 'ERR_FINGERPRINT_MAGIC')
  })

  const edit = (fn: (b: Uint8Array, dv: DataView) => void): Uint8Array => {
    const b = Uint8Array.from(bytes)
    fn(b, new DataView(b.buffer))
    return b
  }
  // Row r starts at 8 + 20r: i32 id1, i32 id2, f32 value1, f32 value2, f32 logSumExp.
  const malformed: Array<[string, Uint8Array, string]> = [
    ['empty', new Uint8Array(0), 'ERR_FINGERPRINT_TRUNCATED'],
    ['3 bytes', bytes.slice(0, 3), 'ERR_FINGERPRINT_TRUNCATED'],
    ['bad magic', edit((b) => (b[1] = 0x46)), 'ERR_FINGERPRINT_MAGIC'],
    ['version 0', edit((b) => (b[3] = 0)), 'ERR_FINGERPRINT_VERSION'],
    ['version 2', edit((b) => (b[3] = 2)), 'ERR_FINGERPRINT_VERSION'],
    ['header cut', bytes.slice(0, 7), 'ERR_FINGERPRINT_TRUNCATED'],
    ['last byte cut', bytes.slice(0, bytes.length - 1), 'ERR_FINGERPRINT_TRUNCATED'],
    ['one trailing byte', Uint8Array.from([...bytes, 0]), 'ERR_FINGERPRINT_FIELD'],
    ['seqLen 0', edit((_, dv) => dv.setUint32(4, 0, true)).slice(0, 8), 'ERR_FINGERPRINT_FIELD'],
    ['seqLen 513', edit((_, dv) => dv.setUint32(4, 513, true)), 'ERR_FINGERPRINT_FIELD'],
    ['seqLen 2^32 - 1', edit((_, dv) => dv.setUint32(4, 0xffffffff, true)), 'ERR_FINGERPRINT_FIELD'],
    ['seqLen grown', edit((_, dv) => dv.setUint32(4, 17, true)), 'ERR_FINGERPRINT_TRUNCATED'],
    ['over the size cap', new Uint8Array(MAX_TOKEN_ROWS_BYTES + 1), 'ERR_FINGERPRINT_TOO_LARGE'],
    ['a negative id', edit((_, dv) => dv.setInt32(8 + 20 * 3, -5, true)), 'ERR_FINGERPRINT_FIELD'],
    ['equal ids', edit((_, dv) => dv.setInt32(12, dv.getInt32(8, true), true)), 'ERR_FINGERPRINT_FIELD'],
    ['value NaN', edit((_, dv) => dv.setFloat32(16, Number.NaN, true)), 'ERR_FINGERPRINT_FIELD'],
    [
      'value -Infinity',
      edit((_, dv) => dv.setFloat32(20, Number.NEGATIVE_INFINITY, true)),
      'ERR_FINGERPRINT_FIELD',
    ],
    ['logSumExp NaN', edit((_, dv) => dv.setFloat32(24, Number.NaN, true)), 'ERR_FINGERPRINT_FIELD'],
    ['second above first', edit((_, dv) => dv.setFloat32(20 + 20 * 5, 1e6, true)), 'ERR_FINGERPRINT_FIELD'],
  ]
  it.each(malformed)('rejects %s', (_name, input, code) =>
    expectVerifyError(() => decodeTokenRows(input), code),
  )

  it('never throws anything but VerifyError on random corruption', () => {
    const rng = new Xoshiro128ss(7)
    let rejected = 0
    for (let t = 0; t < 2000; t++) {
      const b = Uint8Array.from(bytes)
      const flips = 1 + (rng.nextUint32() % 4)
      for (let i = 0; i < flips; i++) b[rng.nextUint32() % b.length] = rng.nextUint32() & 0xff
      try {
        expect(decodeTokenRows(b).seqLen).toBeGreaterThan(0)
      } catch (err) {
        expect(err).toBeInstanceOf(VerifyError)
        rejected++
      }
    }
    expect(rejected).toBeGreaterThan(0)
  })

  it.each<[string, unknown]>([
    ['null', null],
    ['ids as Float32Array', { ...rows, ids: Float32Array.from(rows.ids) }],
    ['values too short', { ...rows, values: rows.values.slice(1) }],
    ['logSumExp too long', { ...rows, logSumExp: new Float32Array(17) }],
  ])('validate and encode reject a tampered object: %s', (_name, tampered) => {
    expectVerifyError(() => validateTokenRows(tampered), 'ERR_FINGERPRINT_FIELD')
    expectVerifyError(() => encodeTokenRows(tampered as TokenRows), 'ERR_FINGERPRINT_FIELD')
  })

  it('tokenRowsOf needs k >= 2 and consistent arrays', () => {
    expectVerifyError(() => tokenRowsOf(rowTopk(4, 1, 3)), 'ERR_VERIFY_INPUT')
    expectVerifyError(() => tokenRowsOf({ ...src, rows: 15 }), 'ERR_VERIFY_INPUT')
  })
})

describe('tokenAgrees', () => {
  /** One position: first (id 5, value top1), second (id 9, value second). */
  const one = (top1: number, second: number): TokenRows => ({
    seqLen: 1,
    ids: Int32Array.of(5, 9),
    values: Float32Array.of(top1, second),
    logSumExp: Float32Array.of(top1 + 1),
  })

  it('agrees on the argmax, disagrees on a token the replica ranks neither first nor second', () => {
    expect(tokenAgrees(one(3, 1), 0, 5)).toBe(true)
    expect(tokenAgrees(one(3, 1), 0, 9)).toBe(false)
    expect(tokenAgrees(one(3, 1), 0, 6)).toBe(false)
    expect(tokenAgrees(one(3, 3), 0, 6)).toBe(false)
  })

  it('accepts the second choice only within the tie tolerance, relative to max(1, |top1|)', () => {
    expect(DEFAULT_TIE_TOLERANCE).toBe(1e-4)
    // |top1| <= 1: absolute 1e-4 (with float32 rounding of the stored values, a margin of 1%).
    expect(tokenAgrees(one(0.5, Math.fround(0.5 - 0.99e-4)), 0, 9)).toBe(true)
    expect(tokenAgrees(one(0.5, Math.fround(0.5 - 1.01e-4)), 0, 9)).toBe(false)
    // |top1| = 20: 2e-3.
    expect(tokenAgrees(one(20, 20 - 1.9e-3), 0, 9)).toBe(true)
    expect(tokenAgrees(one(20, 20 - 2.1e-3), 0, 9)).toBe(false)
    expect(tokenAgrees(one(-20, -20 - 1.9e-3), 0, 9)).toBe(true)
    // An exact tie, and an explicit tolerance.
    expect(tokenAgrees(one(2, 2), 0, 9, 0)).toBe(true)
    expect(tokenAgrees(one(2, 1.9), 0, 9, 0.06)).toBe(true)
    expect(tokenAgrees(one(2, 1.9), 0, 9, 0.04)).toBe(false)
  })

  it('reads the right position of a multi-row answer', () => {
    const rows = tokenRowsOf(rowTopk(16, 4, 5))
    for (let p = 0; p < 16; p++) {
      expect(tokenAgrees(rows, p, rows.ids[2 * p] as number)).toBe(true)
      const other = p === 0 ? 1 : p - 1
      const foreign = rows.ids[2 * other] as number
      if (foreign !== rows.ids[2 * p] && foreign !== rows.ids[2 * p + 1]) {
        expect(tokenAgrees(rows, p, foreign)).toBe(false)
      }
    }
  })

  it.each([
    ['position -1', () => tokenAgrees(one(1, 0), -1, 5)],
    ['position = seqLen', () => tokenAgrees(one(1, 0), 1, 5)],
    ['position 0.5', () => tokenAgrees(one(1, 0), 0.5, 5)],
    ['tieTolerance NaN', () => tokenAgrees(one(1, 0), 0, 5, Number.NaN)],
    ['tieTolerance -1', () => tokenAgrees(one(1, 0), 0, 5, -1)],
  ])('rejects bad arguments: %s', (_name, fn) => expectVerifyError(fn, 'ERR_VERIFY_INPUT'))
})
