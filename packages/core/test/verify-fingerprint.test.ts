import { describe, expect, it } from 'vitest'
import { Xoshiro128ss } from '../src/base/rng.js'
import { VerifyError } from '../src/errors.js'
import { compareFingerprints, compareHidden, compareToFingerprint } from '../src/verify/compare-hidden.js'
import {
  fingerprintHidden,
  fingerprintPositions,
  type HiddenFingerprint,
  MAX_FINGERPRINT_ROWS,
  validateFingerprint,
} from '../src/verify/fingerprint.js'
import {
  decodeFingerprint,
  encodeFingerprint,
  fingerprintByteLength,
  MAX_FINGERPRINT_BYTES,
} from '../src/verify/fingerprint-codec.js'
import type { Tolerance } from '../src/verify/tolerance.js'

const TOL: Tolerance = { relative: 1e-3, indexOverlap: 0.75 }

function gaussian(n: number, seed: number): Float32Array {
  const rng = new Xoshiro128ss(seed)
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    const u = 1 - rng.nextFloat64()
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.nextFloat64())
  }
  return out
}

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

describe('fingerprintHidden', () => {
  it('covers every row up to 512, then the last 4 plus 508 challenge-sampled earlier ones', () => {
    expect(MAX_FINGERPRINT_ROWS).toBe(512)
    expect(fingerprintPositions(1)).toEqual([0])
    expect(fingerprintPositions(3)).toEqual([0, 1, 2])
    // Before windowed verification a 16-row step was covered by 8 rows; now by all 16.
    expect(fingerprintPositions(16, 5)).toEqual(Array.from({ length: 16 }, (_, i) => i))
    expect(fingerprintPositions(512, 5)).toEqual(Array.from({ length: 512 }, (_, i) => i))
    for (const seqLen of [513, 1000, 100_000]) {
      const long = fingerprintPositions(seqLen, 7)
      expect(long).toHaveLength(512)
      expect(long.slice(508)).toEqual([seqLen - 4, seqLen - 3, seqLen - 2, seqLen - 1])
      expect([...long].sort((a, b) => a - b)).toEqual(long)
      expect(new Set(long).size).toBe(512)
      expect(long.every((p) => Number.isInteger(p) && p >= 0 && p < seqLen)).toBe(true)
      expect(fingerprintPositions(seqLen, 8)).not.toEqual(long)
    }
    // 513 rows: the sample misses exactly one earlier row, and which one depends on the challenge.
    const missed = (c: number) => {
      const set = new Set(fingerprintPositions(513, c))
      return Array.from({ length: 509 }, (_, i) => i).filter((p) => !set.has(p))
    }
    const misses = new Set([1, 2, 3, 4, 5, 6, 7, 8].map((c) => missed(c)[0]))
    expect(missed(1)).toHaveLength(1)
    expect(misses.size).toBeGreaterThan(1)
  })

  it('a fingerprint of a 16-row step covers all 16 rows, of a 600-row one 512', () => {
    const fp = fingerprintHidden(gaussian(16 * 32, 4), 16, 32, 16, { challenge: 9 })
    expect(fp.rows.map((r) => r.position)).toEqual(Array.from({ length: 16 }, (_, i) => i))
    expect(encodeFingerprint(fp).length).toBe(20 + 16 * (8 + 6 * 16 + 4 * 16))
    const long = fingerprintHidden(gaussian(600 * 16, 5), 600, 16, 16, { challenge: 9 })
    expect(long.rows.map((r) => r.position)).toEqual(fingerprintPositions(600, 9))
    expect(decodeFingerprint(encodeFingerprint(long))).toEqual(long)
  })

  it('records the top-16 |values|, the norm and a sketch of every covered row', () => {
    const h = 64
    const row = new Float32Array(h).map((_, i) => (i % 2 === 0 ? 0.01 * i : -0.01 * i))
    row[5] = -9
    row[40] = 8
    const fp = fingerprintHidden(row, 1, h)
    expect(fp.k).toBe(16)
    const r = fp.rows[0]
    expect(r?.position).toBe(0)
    // The 14 largest of the ramp are indices 50..63; with 5 and 40 that makes 16.
    expect([...(r?.indices ?? [])]).toEqual([5, 40, ...Array.from({ length: 14 }, (_, i) => 50 + i)])
    expect(r?.values[0]).toBe(-9)
    expect(r?.values[1]).toBe(8)
    let sumSq = 0
    for (const v of row) sumSq += v * v
    expect(r?.norm).toBeCloseTo(Math.sqrt(sumSq), 5)
    expect(r?.sketch).toHaveLength(16)
  })

  it('is 168 bytes a row whatever the hidden size', () => {
    for (const h of [64, 2048, 8192]) {
      const fp = fingerprintHidden(gaussian(h, h), 1, h)
      expect(encodeFingerprint(fp).length).toBe(188)
      expect(fingerprintByteLength(fp)).toBe(188)
    }
    // Every row of a prefill up to 512 (it was 8 rows before windowed verification).
    const prefill = fingerprintHidden(gaussian(100 * 256, 3), 100, 256)
    expect(encodeFingerprint(prefill).length).toBe(20 + 100 * 168)
    const window = fingerprintHidden(gaussian(512 * 64, 3), 512, 64)
    expect(encodeFingerprint(window).length).toBe(20 + 512 * 168)
    // The cap is the largest valid one: 512 rows at k = 64 and m = 16.
    expect(MAX_FINGERPRINT_BYTES).toBe(20 + 512 * (8 + 6 * 64 + 4 * 16))
    const widest = fingerprintHidden(gaussian(600 * 64, 6), 600, 64, 64)
    expect(encodeFingerprint(widest).length).toBe(MAX_FINGERPRINT_BYTES)
  })

  it.each([
    ['not a Float32Array', () => fingerprintHidden([1, 2] as unknown as Float32Array, 1, 2)],
    ['wrong length', () => fingerprintHidden(new Float32Array(10), 2, 4)],
    ['NaN value', () => fingerprintHidden(new Float32Array([1, Number.NaN, 0, 0]), 1, 4)],
    ['Infinity value', () => fingerprintHidden(new Float32Array([1, Number.POSITIVE_INFINITY]), 1, 2)],
    ['seqLen 0', () => fingerprintHidden(new Float32Array(0), 0, 4)],
    ['hiddenSize 0', () => fingerprintHidden(new Float32Array(4), 1, 0)],
    ['k 0', () => fingerprintHidden(new Float32Array(4), 1, 4, 0)],
    ['k 65', () => fingerprintHidden(new Float32Array(100), 1, 100, 65)],
    ['challenge -1', () => fingerprintHidden(new Float32Array(4), 1, 4, 4, { challenge: -1 })],
    ['challenge 2^32', () => fingerprintHidden(new Float32Array(4), 1, 4, 4, { challenge: 2 ** 32 })],
  ])('rejects bad input: %s', (_name, fn) => {
    expectVerifyError(fn, 'ERR_VERIFY_INPUT')
  })
})

describe('encodeFingerprint / decodeFingerprint', () => {
  const h = 96
  const seqLen = 20
  const hidden = gaussian(seqLen * h, 11)
  const fp = fingerprintHidden(hidden, seqLen, h, 16, { challenge: 0xdeadbeef })
  const bytes = encodeFingerprint(fp)

  it('round-trips exactly', () => {
    const back = decodeFingerprint(bytes)
    expect(back).toEqual(fp)
    expect(encodeFingerprint(back)).toEqual(bytes)
    // A view into a larger buffer decodes the same.
    const padded = new Uint8Array(bytes.length + 7)
    padded.set(bytes, 3)
    expect(decodeFingerprint(padded.subarray(3, 3 + bytes.length))).toEqual(fp)
  })

  // Offsets: header 20 bytes; row 0 starts at 20: position u32, norm f32 at 24, 16 u16 indices at
  // 28..59, 16 f32 values at 60..123, 16 f32 sketch at 124..187. Rows are 168 bytes.
  const edit = (fn: (b: Uint8Array, dv: DataView) => void): Uint8Array => {
    const b = Uint8Array.from(bytes)
    fn(b, new DataView(b.buffer))
    return b
  }
  /** The same fingerprint with its row count set to `n` and the bytes cut to match. */
  const withRows = (n: number): Uint8Array => edit((_, dv) => dv.setUint16(6, n, true)).slice(0, 20 + n * 168)
  const malformed: Array<[string, Uint8Array, string]> = [
    ['empty', new Uint8Array(0), 'ERR_FINGERPRINT_TRUNCATED'],
    ['3 bytes', bytes.slice(0, 3), 'ERR_FINGERPRINT_TRUNCATED'],
    ['bad magic', edit((b) => (b[0] = 0x43)), 'ERR_FINGERPRINT_MAGIC'],
    ['version 1 (u8 row count)', edit((b) => (b[3] = 1)), 'ERR_FINGERPRINT_VERSION'],
    ['version 3', edit((b) => (b[3] = 3)), 'ERR_FINGERPRINT_VERSION'],
    ['version 0', edit((b) => (b[3] = 0)), 'ERR_FINGERPRINT_VERSION'],
    ['header cut', bytes.slice(0, 19), 'ERR_FINGERPRINT_TRUNCATED'],
    ['last byte cut', bytes.slice(0, bytes.length - 1), 'ERR_FINGERPRINT_TRUNCATED'],
    ['one trailing byte', Uint8Array.from([...bytes, 0]), 'ERR_FINGERPRINT_FIELD'],
    ['over the size cap', new Uint8Array(MAX_FINGERPRINT_BYTES + 1), 'ERR_FINGERPRINT_TOO_LARGE'],
    ['row count high byte set', edit((b) => (b[7] = 1)), 'ERR_FINGERPRINT_TRUNCATED'],
    ['row count over 512', edit((_, dv) => dv.setUint16(6, 513, true)).slice(0, 20), 'ERR_FINGERPRINT_FIELD'],
    [
      'row count 65535 in a small buffer',
      edit((_, dv) => dv.setUint16(6, 0xffff, true)).slice(0, 20),
      'ERR_FINGERPRINT_FIELD',
    ],
    ['a row left out', withRows(19), 'ERR_FINGERPRINT_FIELD'],
    ['k = 0', edit((b) => (b[4] = 0)).slice(0, 20 + 20 * (8 + 64)), 'ERR_FINGERPRINT_FIELD'],
    ['sketch size 0', edit((b) => (b[5] = 0)).slice(0, 20 + 20 * (8 + 96)), 'ERR_FINGERPRINT_FIELD'],
    ['no rows', edit((b) => (b[6] = 0)).slice(0, 20), 'ERR_FINGERPRINT_FIELD'],
    ['seqLen 0', edit((_, dv) => dv.setUint32(8, 0, true)), 'ERR_FINGERPRINT_FIELD'],
    ['seqLen over the cap', edit((_, dv) => dv.setUint32(8, 2 ** 31, true)), 'ERR_FINGERPRINT_FIELD'],
    ['hiddenSize 0', edit((_, dv) => dv.setUint32(12, 0, true)), 'ERR_FINGERPRINT_FIELD'],
    ['hiddenSize below k', edit((_, dv) => dv.setUint32(12, 8, true)), 'ERR_FINGERPRINT_FIELD'],
    ['hiddenSize below an index', edit((_, dv) => dv.setUint32(12, 17, true)), 'ERR_FINGERPRINT_FIELD'],
    ['seqLen grown: tail row missing', edit((_, dv) => dv.setUint32(8, 21, true)), 'ERR_FINGERPRINT_FIELD'],
    [
      'position beyond seqLen',
      edit((_, dv) => dv.setUint32(20 + 7 * 168, 20, true)),
      'ERR_FINGERPRINT_FIELD',
    ],
    ['positions out of order', edit((_, dv) => dv.setUint32(20 + 168, 0, true)), 'ERR_FINGERPRINT_FIELD'],
    ['a row swapped for another', edit((_, dv) => dv.setUint32(20 + 168, 2, true)), 'ERR_FINGERPRINT_FIELD'],
    ['norm NaN', edit((_, dv) => dv.setFloat32(24, Number.NaN, true)), 'ERR_FINGERPRINT_FIELD'],
    [
      'norm Infinity',
      edit((_, dv) => dv.setFloat32(24, Number.POSITIVE_INFINITY, true)),
      'ERR_FINGERPRINT_FIELD',
    ],
    ['norm negative', edit((_, dv) => dv.setFloat32(24, -1, true)), 'ERR_FINGERPRINT_FIELD'],
    ['norm below the values', edit((_, dv) => dv.setFloat32(24, 0.5, true)), 'ERR_FINGERPRINT_FIELD'],
    ['index beyond hiddenSize', edit((_, dv) => dv.setUint16(28 + 30, 96, true)), 'ERR_FINGERPRINT_FIELD'],
    [
      'indices not ascending',
      edit((_, dv) => {
        const a = dv.getUint16(28, true)
        dv.setUint16(28, dv.getUint16(30, true), true)
        dv.setUint16(30, a, true)
      }),
      'ERR_FINGERPRINT_FIELD',
    ],
    [
      'duplicate index',
      edit((_, dv) => dv.setUint16(30, dv.getUint16(28, true), true)),
      'ERR_FINGERPRINT_FIELD',
    ],
    ['value NaN', edit((_, dv) => dv.setFloat32(60, Number.NaN, true)), 'ERR_FINGERPRINT_FIELD'],
    [
      'value -Infinity',
      edit((_, dv) => dv.setFloat32(60, Number.NEGATIVE_INFINITY, true)),
      'ERR_FINGERPRINT_FIELD',
    ],
    ['sketch NaN', edit((_, dv) => dv.setFloat32(124, Number.NaN, true)), 'ERR_FINGERPRINT_FIELD'],
    ['sketch beyond sqrt(h) x norm', edit((_, dv) => dv.setFloat32(124, 1e9, true)), 'ERR_FINGERPRINT_FIELD'],
  ]

  it.each(malformed)('rejects %s', (_name, input, code) =>
    expectVerifyError(() => decodeFingerprint(input), code),
  )

  it('rejects what is not a Uint8Array', () => {
    expectVerifyError(() => decodeFingerprint([1, 2, 3] as unknown as Uint8Array), 'ERR_VERIFY_INPUT')
  })

  it('never throws anything but VerifyError on random corruption', () => {
    const rng = new Xoshiro128ss(5)
    let rejected = 0
    for (let t = 0; t < 2000; t++) {
      const b = Uint8Array.from(bytes)
      const flips = 1 + (rng.nextUint32() % 4)
      for (let i = 0; i < flips; i++) b[rng.nextUint32() % b.length] = rng.nextUint32() & 0xff
      try {
        const fpBack = decodeFingerprint(b)
        expect(fpBack.rows.length).toBeGreaterThan(0)
      } catch (err) {
        expect(err).toBeInstanceOf(VerifyError)
        rejected++
      }
    }
    expect(rejected).toBeGreaterThan(0)
  })

  it.each<[string, (f: HiddenFingerprint) => unknown]>([
    [
      'indices as Int32Array',
      (f) => ({ ...f, rows: f.rows.map((r) => ({ ...r, indices: Int32Array.from(r.indices) })) }),
    ],
    ['values too short', (f) => ({ ...f, rows: f.rows.map((r) => ({ ...r, values: r.values.slice(1) })) })],
    [
      'sketch sizes differ',
      (f) => ({ ...f, rows: f.rows.map((r, i) => ({ ...r, sketch: r.sketch.slice(i) })) }),
    ],
    ['rows not an array', (f) => ({ ...f, rows: {} })],
    ['null', () => null],
  ])('encode and validate reject a tampered object: %s', (_name, tamper) => {
    expectVerifyError(() => validateFingerprint(tamper(fp)), 'ERR_FINGERPRINT_FIELD')
    expectVerifyError(() => encodeFingerprint(tamper(fp) as HiddenFingerprint), 'ERR_FINGERPRINT_FIELD')
  })
})

describe('compareHidden (worst-row relative L2)', () => {
  const h = 32
  const a = gaussian(3 * h, 1)

  it('measures |a - b| / max(|a|, |b|) on the worst row', () => {
    expect(compareHidden(a, a, h, TOL)).toEqual({ agree: true, score: 0, deviation: 0 })
    const scaled = a.map((v, i) => (i >= h && i < 2 * h ? 2 * v : v))
    expect(compareHidden(a, scaled, h, TOL).deviation).toBeCloseTo(0.5, 6)
    const zeroed = a.map((v, i) => (i < h ? 0 : v))
    const z = compareHidden(a, zeroed, h, TOL)
    expect(z.deviation).toBeCloseTo(1, 6)
    expect(z.agree).toBe(false)
    expect(compareHidden(new Float32Array(h), new Float32Array(h), h, TOL).agree).toBe(true)
  })

  it('agrees at the tolerance boundary, not beyond', () => {
    const b = Float32Array.from(a)
    b[0] = (b[0] as number) + 1e-3
    const dev = compareHidden(a, b, h, TOL).deviation
    expect(compareHidden(a, b, h, { relative: dev * 1.001, indexOverlap: 0.75 }).agree).toBe(true)
    expect(compareHidden(a, b, h, { relative: dev * 0.999, indexOverlap: 0.75 }).agree).toBe(false)
  })

  it('treats peer data of the wrong shape or non-finite as disagreement', () => {
    const nan = Float32Array.from(a)
    nan[40] = Number.NaN
    for (const other of [nan, a.slice(0, 2 * h), a.map((v, i) => (i === 3 ? Number.POSITIVE_INFINITY : v))]) {
      const c = compareHidden(a, other, h, TOL)
      expect(c.agree).toBe(false)
      expect(c.score).toBe(Number.POSITIVE_INFINITY)
    }
  })

  it.each<[string, () => unknown]>([
    ['tolerance 0', () => compareHidden(a, a, h, { relative: 0, indexOverlap: 0.75 })],
    ['tolerance NaN', () => compareHidden(a, a, h, { relative: Number.NaN, indexOverlap: 0.75 })],
    ['overlap 1.5', () => compareHidden(a, a, h, { relative: 1e-3, indexOverlap: 1.5 })],
    ['hiddenSize 0', () => compareHidden(a, a, 0, TOL)],
    ['arrays', () => compareHidden([1] as unknown as Float32Array, a, h, TOL)],
  ])('rejects bad arguments: %s', (_name, fn) => {
    expectVerifyError(fn, 'ERR_VERIFY_INPUT')
  })
})

describe('compareToFingerprint', () => {
  const h = 256
  const seqLen = 12
  const x = gaussian(seqLen * h, 2)

  it('agrees with its own full state exactly, under any challenge', () => {
    for (const challenge of [0, 1, 0xffffffff]) {
      const c = compareToFingerprint(x, fingerprintHidden(x, seqLen, h, 16, { challenge }), TOL)
      expect(c.agree).toBe(true)
      expect(c.deviation).toBeLessThan(1e-6)
      expect(c.overlap).toBe(1)
    }
  })

  it('estimates the relative L2 deviation within the sketch slack', () => {
    const rng = new Xoshiro128ss(9)
    const y = x.map((v) => v + 0.01 * (rng.nextFloat64() - 0.5))
    const exact = compareHidden(x, y, h, TOL).deviation
    const est = compareToFingerprint(x, fingerprintHidden(y, seqLen, h, 16, { challenge: 3 }), TOL).deviation
    expect(est).toBeGreaterThan(exact / 1.5)
    expect(est).toBeLessThan(exact * 1.5)
  })

  it('catches a lie in a sampled row of a long prefill the primary could not predict', () => {
    const n = 600
    const hh = 16
    const xl = gaussian(n * hh, 21)
    const positions = fingerprintPositions(n, 77)
    const sampled = positions[0] as number
    expect(sampled).toBeLessThan(n - 4)
    const lie = Float32Array.from(xl)
    for (let i = 0; i < hh; i++) lie[sampled * hh + i] = 0
    const c = compareToFingerprint(lie, fingerprintHidden(xl, n, hh, 16, { challenge: 77 }), TOL)
    expect(c.agree).toBe(false)
  })

  it('disagrees with a full state of the wrong shape or with NaN', () => {
    const fp = fingerprintHidden(x, seqLen, h)
    expect(compareToFingerprint(x.slice(h), fp, TOL).agree).toBe(false)
    const nan = Float32Array.from(x)
    nan[(seqLen - 1) * h] = Number.NaN
    expect(compareToFingerprint(nan, fp, TOL).agree).toBe(false)
  })

  it('compareFingerprints: honest pairs agree on shared rows, lies do not', () => {
    const a = fingerprintHidden(x, seqLen, h, 16, { challenge: 1 })
    const b = fingerprintHidden(x, seqLen, h, 16, { challenge: 2 })
    expect(compareFingerprints(a, b, TOL).agree).toBe(true)
    const scaled = x.map((v) => v * 1.1)
    expect(
      compareFingerprints(a, fingerprintHidden(scaled, seqLen, h, 16, { challenge: 2 }), TOL).agree,
    ).toBe(false)
    const other = fingerprintHidden(gaussian(seqLen * h, 99), seqLen, h, 16, { challenge: 1 })
    expect(compareFingerprints(a, other, TOL).agree).toBe(false)
  })
})
