import { ropeCaches } from '@butterfly/core'
import { describe, expect, it } from 'vitest'
import { AttentionScratch, attentionBackward, attentionForward } from '../src/attention.js'
import { gemmNT, transpose } from '../src/gemm.js'
import { configForShape } from '../src/presets.js'
import { Rng } from '../src/rng.js'
import {
  crossEntropy,
  rmsNormBackward,
  rmsNormForward,
  rope,
  swigluBackward,
  swigluForward,
} from '../src/row-ops.js'
import { maxGradError, randomArray, weightedSum } from './grad-check.js'

// Every op's hand-written backward against central finite differences, all in float64.
const TOL = 1e-6

describe('gemmNT', () => {
  it('matches a naive product for odd sizes, strides, offsets and accumulation', () => {
    const rng = new Rng(1)
    for (const [m, n, k] of [
      [1, 1, 1],
      [4, 4, 4],
      [7, 5, 3],
      [9, 13, 17],
    ] as const) {
      const lda = k + 2
      const ldb = k + 3
      const ldc = n + 1
      const A = randomArray(3 + m * lda, rng)
      const B = randomArray(5 + n * ldb, rng)
      const C0 = randomArray(2 + m * ldc, rng)
      for (const accumulate of [false, true]) {
        const C = Float64Array.from(C0)
        gemmNT(A, 3, lda, B, 5, ldb, C, 2, ldc, m, n, k, accumulate)
        let worst = 0
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            let s = accumulate ? (C0[2 + i * ldc + j] as number) : 0
            for (let p = 0; p < k; p++) s += (A[3 + i * lda + p] as number) * (B[5 + j * ldb + p] as number)
            worst = Math.max(worst, Math.abs(s - (C[2 + i * ldc + j] as number)))
          }
        }
        expect(worst, `${m}x${n}x${k} accumulate=${accumulate}`).toBeLessThan(1e-12)
        // Padding between rows is never written.
        expect(C[2 + n]).toBe(C0[2 + n])
      }
    }
  })

  it('transposes with strides', () => {
    const src = Float64Array.from({ length: 3 * 5 }, (_, i) => i)
    const dst = new Float64Array(4 * 4)
    transpose(src, 1, 5, 3, 4, dst, 0, 4)
    expect(Array.from(dst.subarray(0, 3))).toEqual([1, 6, 11])
    expect(Array.from(dst.subarray(12, 15))).toEqual([4, 9, 14])
  })
})

describe('row ops: backward equals finite differences', () => {
  const rng = new Rng(7)

  it('RMSNorm (input and gain)', () => {
    const rows = 3
    const d = 6
    const x = randomArray(rows * d, rng)
    const g = randomArray(d, rng)
    const w = randomArray(rows * d, rng)
    const out = new Float64Array(rows * d)
    const inv = new Float64Array(rows)
    const loss = () => {
      rmsNormForward(x, g, 0, out, inv, rows, d, 1e-5)
      return weightedSum(out, w)
    }
    loss()
    const dx = new Float64Array(rows * d)
    const dg = new Float64Array(d)
    rmsNormBackward(w, x, g, 0, inv, dx, dg, 0, rows, d)
    expect(maxGradError(x, dx, loss)).toBeLessThan(TOL)
    expect(maxGradError(g, dg, loss)).toBeLessThan(TOL)
  })

  it('RoPE (rotate half): backward is the inverse rotation', () => {
    const c = configForShape({ layers: 1, hidden: 16, heads: 2, kvHeads: 1, ffn: 8, context: 8 })
    const { cos, sin } = ropeCaches(c)
    const rows = 10 // two sequences of 5
    const ld = 3 * 8 + 2
    const x = randomArray(rows * ld, rng)
    const w = randomArray(rows * ld, rng)
    const loss = () => {
      const y = Float64Array.from(x)
      rope(y, rows, ld, 2, 3, 8, 5, cos, sin, 1)
      return weightedSum(y, w)
    }
    const grad = Float64Array.from(w)
    rope(grad, rows, ld, 2, 3, 8, 5, cos, sin, -1)
    expect(maxGradError(x, grad, loss)).toBeLessThan(TOL)
    // Columns outside the rotated heads pass through untouched.
    const y = Float64Array.from(x)
    rope(y, rows, ld, 2, 3, 8, 5, cos, sin, 1)
    expect([y[0], y[1]]).toEqual([x[0], x[1]])
  })

  it('SwiGLU', () => {
    const rows = 3
    const f = 5
    const gu = randomArray(rows * 2 * f, rng, 2)
    const w = randomArray(rows * f, rng)
    const out = new Float64Array(rows * f)
    const loss = () => {
      swigluForward(gu, out, rows, f)
      return weightedSum(out, w)
    }
    const dgu = new Float64Array(rows * 2 * f)
    swigluBackward(w, gu, dgu, rows, f)
    expect(maxGradError(gu, dgu, loss)).toBeLessThan(TOL)
  })

  it('cross-entropy, including unscored leading rows', () => {
    const rows = 6
    const v = 7
    const logits = randomArray(rows * v, rng, 3)
    const targets = [0, 3, 6, 2, 2, 5]
    for (const firstRow of [0, 2]) {
      const loss = () => crossEntropy(Float64Array.from(logits), targets, rows, v, 3, firstRow, undefined)
      const grad = Float64Array.from(logits)
      const value = crossEntropy(grad, targets, rows, v, 3, firstRow, 1)
      expect(value).toBeCloseTo(loss(), 12)
      expect(maxGradError(logits, grad, loss)).toBeLessThan(TOL)
    }
    // Uniform logits: the loss is log(v) per scored row.
    expect(crossEntropy(new Float64Array(rows * v), targets, rows, v, 3, 0, undefined)).toBeCloseTo(
      rows * Math.log(v),
      12,
    )
  })

  it('causal GQA attention (odd length, two sequences)', () => {
    const shape = { batch: 2, seqLen: 7, heads: 4, kvHeads: 2, headDim: 4 }
    const qDim = 16
    const ld = qDim + 2 * 8
    const rows = 14
    const qkv = randomArray(rows * ld, rng)
    const w = randomArray(rows * qDim, rng)
    const scratch = new AttentionScratch(7, 4, (n) => new Float64Array(n))
    const probs = new Float64Array(2 * 4 * 49)
    const out = new Float64Array(rows * qDim)
    const loss = () => {
      attentionForward(qkv, probs, out, shape, scratch)
      return weightedSum(out, w)
    }
    loss()
    // Causality: the first row of each head attends only to itself.
    expect(probs[0]).toBeCloseTo(1, 12)
    expect(probs[1]).toBe(0)
    const dqkv = new Float64Array(rows * ld)
    attentionBackward(qkv, probs, out, w, dqkv, shape, scratch)
    expect(maxGradError(qkv, dqkv, loss)).toBeLessThan(TOL)
  })
})
