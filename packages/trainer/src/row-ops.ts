import type { Floats } from './gemm.js'

/*
 * Row-wise pieces of the Llama block, forward and backward. Every function works on `rows`
 * rows laid out contiguously; backward functions ADD into their input gradients (`dx`, `dg`),
 * so residual branches and parameter gradients accumulate without extra buffers.
 */

/** out = x / rms(x) * g per row; inv[r] keeps 1 / rms for the backward pass. */
export function rmsNormForward(
  x: Floats,
  g: Floats,
  gOff: number,
  out: Floats,
  inv: Floats,
  rows: number,
  d: number,
  eps: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * d
    let sumSq = 0
    for (let i = 0; i < d; i++) {
      const v = x[o + i] as number
      sumSq += v * v
    }
    const s = 1 / Math.sqrt(sumSq / d + eps)
    inv[r] = s
    for (let i = 0; i < d; i++) out[o + i] = (x[o + i] as number) * s * (g[gOff + i] as number)
  }
}

/**
 * With y = x * s * g and s = (mean(x^2) + eps)^-1/2:
 * dg += dy * x * s, dx += s * dy * g - x * s^3 / d * sum(dy * g * x).
 */
export function rmsNormBackward(
  dy: Floats,
  x: Floats,
  g: Floats,
  gOff: number,
  inv: Floats,
  dx: Floats,
  dg: Floats,
  dgOff: number,
  rows: number,
  d: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * d
    const s = inv[r] as number
    let dot = 0
    for (let i = 0; i < d; i++) {
      const dyi = dy[o + i] as number
      const xi = x[o + i] as number
      dot += dyi * (g[gOff + i] as number) * xi
      dg[dgOff + i] = (dg[dgOff + i] as number) + dyi * xi * s
    }
    const c = (s * s * s * dot) / d
    for (let i = 0; i < d; i++) {
      dx[o + i] =
        (dx[o + i] as number) + s * (dy[o + i] as number) * (g[gOff + i] as number) - (x[o + i] as number) * c
    }
  }
}

/**
 * Hugging Face "rotate half" RoPE, in place, on `heads` head vectors of `hd` values starting at
 * column `col` of each row (row stride `ld`). Row r is at position r % seqLen. `sign` -1 rotates
 * backwards, which is the backward pass (the rotation is orthogonal).
 */
export function rope(
  buf: Floats,
  rows: number,
  ld: number,
  col: number,
  heads: number,
  hd: number,
  seqLen: number,
  cos: Float32Array,
  sin: Float32Array,
  sign: 1 | -1,
): void {
  const half = hd / 2
  for (let r = 0; r < rows; r++) {
    const c0 = ((r % seqLen) * half) | 0
    for (let h = 0; h < heads; h++) {
      const o = r * ld + col + h * hd
      for (let i = 0; i < half; i++) {
        const c = cos[c0 + i] as number
        const s = sign * (sin[c0 + i] as number)
        const a = buf[o + i] as number
        const b = buf[o + i + half] as number
        buf[o + i] = a * c - b * s
        buf[o + i + half] = b * c + a * s
      }
    }
  }
}

/** gu rows are [gate (f) | up (f)]; out = silu(gate) * up. */
export function swigluForward(gu: Floats, out: Floats, rows: number, f: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * 2 * f
    for (let i = 0; i < f; i++) {
      const g = gu[o + i] as number
      out[r * f + i] = (g / (1 + Math.exp(-g))) * (gu[o + f + i] as number)
    }
  }
}

/** dgu = [dh * up * silu'(gate) | dh * silu(gate)], silu'(g) = sig(g) * (1 + g * (1 - sig(g))). */
export function swigluBackward(dh: Floats, gu: Floats, dgu: Floats, rows: number, f: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * 2 * f
    for (let i = 0; i < f; i++) {
      const g = gu[o + i] as number
      const u = gu[o + f + i] as number
      const d = dh[r * f + i] as number
      const sig = 1 / (1 + Math.exp(-g))
      dgu[o + i] = d * u * sig * (1 + g * (1 - sig))
      dgu[o + f + i] = d * g * sig
    }
  }
}

/**
 * Softmax cross-entropy over `rows` rows of `v` logits. Rows before `firstRow` within each
 * sequence of `seqLen` are left out (their gradient is zero). Returns the summed loss; when
 * `gradScale` is given the logits are replaced, in place, by (softmax - onehot) * gradScale.
 */
export function crossEntropy(
  logits: Floats,
  targets: ArrayLike<number>,
  rows: number,
  v: number,
  seqLen: number,
  firstRow: number,
  gradScale: number | undefined,
): number {
  let total = 0
  for (let r = 0; r < rows; r++) {
    const o = r * v
    if (r % seqLen < firstRow) {
      if (gradScale !== undefined) logits.fill(0, o, o + v)
      continue
    }
    let max = Number.NEGATIVE_INFINITY
    for (let j = 0; j < v; j++) max = Math.max(max, logits[o + j] as number)
    let sum = 0
    for (let j = 0; j < v; j++) sum += Math.exp((logits[o + j] as number) - max)
    const lse = max + Math.log(sum)
    const t = targets[r] as number
    total += lse - (logits[o + t] as number)
    if (gradScale !== undefined) {
      for (let j = 0; j < v; j++) logits[o + j] = Math.exp((logits[o + j] as number) - lse) * gradScale
      logits[o + t] = (logits[o + t] as number) - gradScale
    }
  }
  return total
}
