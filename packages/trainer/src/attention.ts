import { type Floats, gemmNT, transpose } from './gemm.js'

/** Shape of causal self-attention over `batch` sequences of `seqLen` rows each. */
export interface AttentionShape {
  readonly batch: number
  readonly seqLen: number
  readonly heads: number
  readonly kvHeads: number
  readonly headDim: number
}

/** Per-head scratch: four [T, T] and four [headDim, T] buffers, allocated once. */
export class AttentionScratch {
  readonly ds: Floats
  readonly dsT: Floats
  readonly pT: Floats
  readonly dP: Floats
  readonly kT: Floats
  readonly qT: Floats
  readonly vT: Floats
  readonly doT: Floats

  constructor(maxSeqLen: number, headDim: number, alloc: (n: number) => Floats) {
    const tt = maxSeqLen * maxSeqLen
    const ht = headDim * maxSeqLen
    this.ds = alloc(tt)
    this.dsT = alloc(tt)
    this.pT = alloc(tt)
    this.dP = alloc(tt)
    this.kT = alloc(ht)
    this.qT = alloc(ht)
    this.vT = alloc(ht)
    this.doT = alloc(ht)
  }
}

/**
 * Rows of `qkv` are [q (heads*hd) | k (kvHeads*hd) | v (kvHeads*hd)], already rotated.
 * Writes softmax(q k^T / sqrt(hd)) (causal) to `probs` [batch, heads, T, T] (upper triangle
 * zero) and probs @ v to `out` [rows, heads*hd]. Query heads share kv heads in groups (GQA).
 */
export function attentionForward(
  qkv: Floats,
  probs: Floats,
  out: Floats,
  shape: AttentionShape,
  scratch: AttentionScratch,
): void {
  const { batch, seqLen: T, heads, kvHeads, headDim: hd } = shape
  const qDim = heads * hd
  const kvDim = kvHeads * hd
  const ld = qDim + 2 * kvDim
  const group = heads / kvHeads
  const scale = 1 / Math.sqrt(hd)
  const vT = scratch.vT
  for (let b = 0; b < batch; b++) {
    const row0 = b * T
    for (let h = 0; h < heads; h++) {
      const kv = Math.floor(h / group)
      const qOff = row0 * ld + h * hd
      const kOff = row0 * ld + qDim + kv * hd
      const vOff = row0 * ld + qDim + kvDim + kv * hd
      const p = (b * heads + h) * T * T
      // Scores: only 4-row blocks' columns up to the block's last row are computed.
      for (let i0 = 0; i0 < T; i0 += 4) {
        const rows = Math.min(4, T - i0)
        gemmNT(qkv, qOff + i0 * ld, ld, qkv, kOff, ld, probs, p + i0 * T, T, rows, i0 + rows, hd, false)
      }
      for (let i = 0; i < T; i++) {
        const o = p + i * T
        let max = Number.NEGATIVE_INFINITY
        for (let j = 0; j <= i; j++) max = Math.max(max, (probs[o + j] as number) * scale)
        let sum = 0
        for (let j = 0; j <= i; j++) {
          const e = Math.exp((probs[o + j] as number) * scale - max)
          probs[o + j] = e
          sum += e
        }
        const inv = 1 / sum
        for (let j = 0; j <= i; j++) probs[o + j] = (probs[o + j] as number) * inv
        probs.fill(0, o + i + 1, o + T)
      }
      transpose(qkv, vOff, ld, T, hd, vT, 0, T)
      for (let i0 = 0; i0 < T; i0 += 4) {
        const rows = Math.min(4, T - i0)
        gemmNT(
          probs,
          p + i0 * T,
          T,
          vT,
          0,
          T,
          out,
          (row0 + i0) * qDim + h * hd,
          qDim,
          rows,
          hd,
          i0 + rows,
          false,
        )
      }
    }
  }
}

/**
 * Backward of attentionForward. `dOut` [rows, heads*hd] is the gradient of `out`; the gradients
 * of q, k and v (before un-rotating) are ADDED into `dqkv`, which has the layout of `qkv`.
 */
export function attentionBackward(
  qkv: Floats,
  probs: Floats,
  out: Floats,
  dOut: Floats,
  dqkv: Floats,
  shape: AttentionShape,
  scratch: AttentionScratch,
): void {
  const { batch, seqLen: T, heads, kvHeads, headDim: hd } = shape
  const qDim = heads * hd
  const kvDim = kvHeads * hd
  const ld = qDim + 2 * kvDim
  const group = heads / kvHeads
  const scale = 1 / Math.sqrt(hd)
  const { ds, dsT, pT, dP, kT, qT, doT } = scratch
  for (let b = 0; b < batch; b++) {
    const row0 = b * T
    for (let h = 0; h < heads; h++) {
      const kv = Math.floor(h / group)
      const qOff = row0 * ld + h * hd
      const kOff = row0 * ld + qDim + kv * hd
      const vOff = row0 * ld + qDim + kvDim + kv * hd
      const oOff = row0 * qDim + h * hd
      const p = (b * heads + h) * T * T
      // dP = dO v^T (causal blocks only).
      for (let i0 = 0; i0 < T; i0 += 4) {
        const rows = Math.min(4, T - i0)
        gemmNT(dOut, oOff + i0 * qDim, qDim, qkv, vOff, ld, dP, i0 * T, T, rows, i0 + rows, hd, false)
      }
      // dS = P * (dP - rowsum(dO * O)) * scale; zero above the diagonal.
      for (let i = 0; i < T; i++) {
        let dot = 0
        const r = oOff + i * qDim
        for (let c = 0; c < hd; c++) dot += (dOut[r + c] as number) * (out[r + c] as number)
        const o = i * T
        for (let j = 0; j <= i; j++) {
          ds[o + j] = (probs[p + o + j] as number) * ((dP[o + j] as number) - dot) * scale
        }
        ds.fill(0, o + i + 1, o + T)
      }
      // dQ = dS k.
      transpose(qkv, kOff, ld, T, hd, kT, 0, T)
      for (let i0 = 0; i0 < T; i0 += 4) {
        const rows = Math.min(4, T - i0)
        gemmNT(ds, i0 * T, T, kT, 0, T, dqkv, qOff + i0 * ld, ld, rows, hd, i0 + rows, true)
      }
      // dK = dS^T q and dV = P^T dO: row j only sees rows i >= j, so k starts at the block.
      transpose(ds, 0, T, T, T, dsT, 0, T)
      transpose(probs, p, T, T, T, pT, 0, T)
      transpose(qkv, qOff, ld, T, hd, qT, 0, T)
      transpose(dOut, oOff, qDim, T, hd, doT, 0, T)
      for (let j0 = 0; j0 < T; j0 += 4) {
        const rows = Math.min(4, T - j0)
        const k = T - j0
        gemmNT(dsT, j0 * T + j0, T, qT, j0, T, dqkv, kOff + j0 * ld, ld, rows, hd, k, true)
        gemmNT(pT, j0 * T + j0, T, doT, j0, T, dqkv, vOff + j0 * ld, ld, rows, hd, k, true)
      }
    }
  }
}
