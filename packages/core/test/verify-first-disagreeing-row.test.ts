import { describe, expect, it } from 'vitest'
import { Xoshiro128ss } from '../src/base/rng.js'
import { VerifyError } from '../src/errors.js'
import { compareHidden, firstDisagreeingRow, rowMatchesFingerprint } from '../src/verify/compare-hidden.js'
import { fingerprintHidden, fingerprintPositions } from '../src/verify/fingerprint.js'
import { decodeFingerprint, encodeFingerprint } from '../src/verify/fingerprint-codec.js'
import type { Tolerance } from '../src/verify/tolerance.js'

/** Relative L2 per row, and at least 75% of the top-16 |value| indices shared. */
const TOL: Tolerance = { relative: 1e-3, indexOverlap: 0.75 }
const H = 256
const SEQ = 16

function gaussian(n: number, seed: number): Float32Array {
  const rng = new Xoshiro128ss(seed)
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    const u = 1 - rng.nextFloat64()
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.nextFloat64())
  }
  return out
}

/** `x` with every row moved by noise of relative L2 size `rel` (random direction per row). */
function noisy(x: Float32Array, rel: number, seed: number): Float32Array {
  const out = Float32Array.from(x)
  const noise = gaussian(x.length, seed)
  for (let off = 0; off < x.length; off += H) {
    let nx = 0
    let nn = 0
    for (let i = off; i < off + H; i++) {
      nx += (x[i] as number) ** 2
      nn += (noise[i] as number) ** 2
    }
    const scale = (rel * Math.sqrt(nx)) / Math.sqrt(nn)
    for (let i = off; i < off + H; i++) out[i] = (x[i] as number) + scale * (noise[i] as number)
  }
  return out
}

/** A lie on one row: that row scaled by 1.01, a 1% relative deviation (10x the tolerance). */
function lieOn(x: Float32Array, row: number, factor = 1.01): Float32Array {
  const out = Float32Array.from(x)
  for (let i = row * H; i < (row + 1) * H; i++) out[i] = (out[i] as number) * factor
  return out
}

describe('firstDisagreeingRow', () => {
  const honest = gaussian(SEQ * H, 3)

  it.each([0, 1, 7, 12, 15])('finds a lie on row %i of a 16-row step at exactly that row', (k) => {
    const fp = decodeFingerprint(
      encodeFingerprint(fingerprintHidden(lieOn(honest, k), SEQ, H, 16, { challenge: 41 + k })),
    )
    expect(fp.rows).toHaveLength(SEQ)
    expect(firstDisagreeingRow(honest, fp, TOL)).toBe(k)
  })

  it('returns the lowest of several disagreeing rows', () => {
    const lie = lieOn(lieOn(honest, 11), 5, 0.98)
    expect(firstDisagreeingRow(honest, fingerprintHidden(lie, SEQ, H, 16, { challenge: 2 }), TOL)).toBe(5)
  })

  it('does not flag honest noise just under the tolerance on every row, under any challenge', () => {
    const replica = noisy(honest, 0.9 * TOL.relative, 8)
    // The noise is what it claims to be: the exact worst-row deviation is 0.9 x the tolerance.
    expect(compareHidden(honest, replica, H, TOL).deviation).toBeCloseTo(0.9e-3, 5)
    for (const challenge of [0, 1, 2, 3, 0xffffffff]) {
      const fp = fingerprintHidden(replica, SEQ, H, 16, { challenge })
      expect(firstDisagreeingRow(honest, fp, TOL)).toBe(-1)
    }
  })

  it('flags noise of 3x the tolerance on one row at that row', () => {
    const replica = Float32Array.from(honest)
    replica.set(noisy(honest, 3 * TOL.relative, 9).subarray(9 * H, 10 * H), 9 * H)
    expect(firstDisagreeingRow(honest, fingerprintHidden(replica, SEQ, H, 16, { challenge: 5 }), TOL)).toBe(9)
  })

  it('agrees with itself exactly (-1), and a shape mismatch is 0', () => {
    const fp = fingerprintHidden(honest, SEQ, H, 16, { challenge: 6 })
    expect(firstDisagreeingRow(honest, fp, TOL)).toBe(-1)
    expect(firstDisagreeingRow(honest.subarray(0, 15 * H), fp, TOL)).toBe(0)
    expect(firstDisagreeingRow(new Float32Array(SEQ * H + 1), fp, TOL)).toBe(0)
  })

  it('a non-finite value in the full state is a disagreement at its row', () => {
    const nan = Float32Array.from(honest)
    nan[13 * H + 4] = Number.NaN
    expect(firstDisagreeingRow(nan, fingerprintHidden(honest, SEQ, H), TOL)).toBe(13)
  })

  it('over 512 rows, finds the first disagreeing row among those covered', () => {
    const n = 600
    const h = 32
    const x = gaussian(n * h, 12)
    const covered = fingerprintPositions(n, 77)
    const target = covered[100] as number
    const lie = Float32Array.from(x)
    for (let i = target * h; i < (target + 1) * h; i++) lie[i] = 0
    const fp = fingerprintHidden(lie, n, h, 16, { challenge: 77 })
    expect(firstDisagreeingRow(x, fp, TOL)).toBe(target)
  })

  it('rejects bad arguments', () => {
    const fp = fingerprintHidden(honest, SEQ, H)
    for (const fn of [
      () => firstDisagreeingRow(honest, fp, { relative: 0, indexOverlap: 0.75 }),
      () => firstDisagreeingRow([1] as unknown as Float32Array, fp, TOL),
      () => firstDisagreeingRow(honest, { ...fp, rows: fp.rows.slice(1) }, TOL),
    ]) {
      expect(fn).toThrow(VerifyError)
    }
  })
})

describe('rowMatchesFingerprint', () => {
  const honest = gaussian(SEQ * H, 4)
  const fp = fingerprintHidden(honest, SEQ, H, 16, { challenge: 17 })
  const row = (k: number, x = honest) => x.slice(k * H, (k + 1) * H)

  it('matches every honest row at its own position and no other', () => {
    for (let k = 0; k < SEQ; k++) {
      expect(rowMatchesFingerprint(row(k), fp, k, TOL)).toBe(true)
      expect(rowMatchesFingerprint(row(k), fp, (k + 1) % SEQ, TOL)).toBe(false)
    }
  })

  it('matches honest noise under the tolerance, not a 1% lie', () => {
    const near = noisy(honest, 0.9 * TOL.relative, 10)
    for (let k = 0; k < SEQ; k++) expect(rowMatchesFingerprint(row(k, near), fp, k, TOL)).toBe(true)
    expect(rowMatchesFingerprint(row(6, lieOn(honest, 6)), fp, 6, TOL)).toBe(false)
  })

  it('is false for a row of the wrong length, a non-finite row, or a position not covered', () => {
    expect(rowMatchesFingerprint(row(3).subarray(1), fp, 3, TOL)).toBe(false)
    const nan = row(3)
    nan[0] = Number.POSITIVE_INFINITY
    expect(rowMatchesFingerprint(nan, fp, 3, TOL)).toBe(false)
    expect(rowMatchesFingerprint(row(3), fp, SEQ, TOL)).toBe(false)
    expect(rowMatchesFingerprint(row(3), fp, -1, TOL)).toBe(false)
  })
})
