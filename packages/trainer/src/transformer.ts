import { type ModelConfig, ropeCaches } from '@butterfly/core'
import { AttentionScratch, type AttentionShape, attentionBackward, attentionForward } from './attention.js'
import { TrainError } from './errors.js'
import { type Floats, gemmNT, transpose } from './gemm.js'
import type { ParamLayout } from './param-layout.js'
import {
  crossEntropy,
  rmsNormBackward,
  rmsNormForward,
  rope,
  swigluBackward,
  swigluForward,
} from './row-ops.js'

/** What one layer keeps from the forward pass for the backward pass. */
interface LayerActivations {
  xn1: Floats
  inv1: Floats
  qkv: Floats
  probs: Floats
  attn: Floats
  x1: Floats
  xn2: Floats
  inv2: Floats
  gu: Floats
  h: Floats
}

export type Precision = 'f32' | 'f64'

/**
 * Forward and hand-written backward pass of a Llama decoder (RMSNorm, rotate-half RoPE, causal
 * GQA attention, SwiGLU, tied LM head, cross-entropy) over a batch of equal-length sequences.
 * Owns every activation and scratch buffer, sized once for `maxBatch` x `maxSeqLen`, so a
 * training step allocates nothing. 'f64' exists for gradient checks; training runs 'f32'.
 */
export class Transformer {
  readonly layout: ParamLayout
  readonly config: ModelConfig
  private readonly maxRows: number
  private readonly maxSeqLen: number
  private readonly cos: Float32Array
  private readonly sin: Float32Array
  private readonly ids: Int32Array
  private readonly xs: Floats[]
  private readonly acts: LayerActivations[]
  private readonly xf: Floats
  private readonly invf: Floats
  /** Logits, then (after a forward with a gradient scale) d loss / d logits. */
  readonly logits: Floats
  private readonly dx: Floats
  private readonly dxn: Floats
  private readonly dqkv: Floats
  private readonly dattn: Floats
  private readonly dgu: Floats
  private readonly dh: Floats
  private readonly tA: Floats
  private readonly tB: Floats
  private readonly wT: Floats
  private readonly scratch: AttentionScratch
  private state: { batch: number; seqLen: number; withGrad: boolean } | undefined

  constructor(layout: ParamLayout, maxBatch: number, maxSeqLen: number, precision: Precision = 'f32') {
    const c = layout.config
    if (
      !Number.isSafeInteger(maxBatch) ||
      maxBatch < 1 ||
      !Number.isSafeInteger(maxSeqLen) ||
      maxSeqLen < 1
    ) {
      throw new TrainError('ERR_TRAIN_CONFIG', `batch and sequence length must be positive integers`)
    }
    if (maxSeqLen > c.maxContext) {
      throw new TrainError(
        'ERR_TRAIN_CONFIG',
        `sequence length ${maxSeqLen} exceeds the context ${c.maxContext}`,
      )
    }
    this.layout = layout
    this.config = c
    this.maxRows = maxBatch * maxSeqLen
    this.maxSeqLen = maxSeqLen
    const alloc =
      precision === 'f64' ? (n: number) => new Float64Array(n) : (n: number) => new Float32Array(n)
    const { hiddenSize: d, intermediateSize: f, vocabSize: v, numHeads: heads } = c
    const rows = this.maxRows
    const { qDim, qkvDim } = layout
    ;({ cos: this.cos, sin: this.sin } = ropeCaches(c))
    this.ids = new Int32Array(rows)
    this.xs = Array.from({ length: c.numLayers + 1 }, () => alloc(rows * d))
    this.acts = Array.from({ length: c.numLayers }, () => ({
      xn1: alloc(rows * d),
      inv1: alloc(rows),
      qkv: alloc(rows * qkvDim),
      probs: alloc(maxBatch * heads * maxSeqLen * maxSeqLen),
      attn: alloc(rows * qDim),
      x1: alloc(rows * d),
      xn2: alloc(rows * d),
      inv2: alloc(rows),
      gu: alloc(rows * 2 * f),
      h: alloc(rows * f),
    }))
    this.xf = alloc(rows * d)
    this.invf = alloc(rows)
    this.logits = alloc(rows * v)
    this.dx = alloc(rows * d)
    this.dxn = alloc(rows * d)
    this.dqkv = alloc(rows * qkvDim)
    this.dattn = alloc(rows * qDim)
    this.dgu = alloc(rows * 2 * f)
    this.dh = alloc(rows * f)
    const widest = Math.max(v, 2 * f, qkvDim, d)
    this.tA = alloc(rows * widest)
    this.tB = alloc(rows * widest)
    this.wT = alloc(Math.max(v * d, 2 * f * d, qkvDim * d))
    this.scratch = new AttentionScratch(maxSeqLen, c.headDim, alloc)
  }

  /**
   * Runs `batch` sequences of `seqLen` tokens (`inputs`, row-major) and returns the summed
   * cross-entropy against `targets`, counting positions >= `firstRow` of each sequence. With
   * `gradScale`, keeps what `backward` needs; the gradient is that of gradScale * summed loss.
   */
  forward(
    params: Floats,
    inputs: ArrayLike<number>,
    targets: ArrayLike<number>,
    batch: number,
    seqLen: number,
    options: { firstRow?: number; gradScale?: number } = {},
  ): number {
    const c = this.config
    const { hiddenSize: d, intermediateSize: f, vocabSize: v, rmsNormEps: eps } = c
    const { qDim, qkvDim } = this.layout
    const rows = batch * seqLen
    if (!(rows >= 1 && rows <= this.maxRows && seqLen <= this.maxSeqLen && Number.isInteger(rows))) {
      throw new TrainError('ERR_TRAIN_CONFIG', `batch ${batch} x ${seqLen} does not fit this workspace`)
    }
    if (inputs.length < rows || targets.length < rows) {
      throw new TrainError('ERR_TRAIN_CONFIG', `need ${rows} inputs and targets`)
    }
    const shape = this.shape(batch, seqLen)
    const x0 = this.xs[0] as Floats
    for (let r = 0; r < rows; r++) {
      const id = inputs[r] as number
      if (!Number.isInteger(id) || id < 0 || id >= v)
        throw new TrainError('ERR_TRAIN_CONFIG', `token id ${id} out of range`)
      this.ids[r] = id
      const src = this.layout.embed + id * d
      for (let i = 0; i < d; i++) x0[r * d + i] = params[src + i] as number
    }
    for (let l = 0; l < c.numLayers; l++) {
      const o = this.layout.layers[l] as (typeof this.layout.layers)[number]
      const a = this.acts[l] as LayerActivations
      const xin = this.xs[l] as Floats
      const xout = this.xs[l + 1] as Floats
      rmsNormForward(xin, params, o.norm1, a.xn1, a.inv1, rows, d, eps)
      gemmNT(a.xn1, 0, d, params, o.wqkv, d, a.qkv, 0, qkvDim, rows, qkvDim, d, false)
      rope(a.qkv, rows, qkvDim, 0, c.numHeads, c.headDim, seqLen, this.cos, this.sin, 1)
      rope(a.qkv, rows, qkvDim, qDim, c.numKvHeads, c.headDim, seqLen, this.cos, this.sin, 1)
      attentionForward(a.qkv, a.probs, a.attn, shape, this.scratch)
      a.x1.set(xin.subarray(0, rows * d))
      gemmNT(a.attn, 0, qDim, params, o.wo, qDim, a.x1, 0, d, rows, d, qDim, true)
      rmsNormForward(a.x1, params, o.norm2, a.xn2, a.inv2, rows, d, eps)
      gemmNT(a.xn2, 0, d, params, o.wgu, d, a.gu, 0, 2 * f, rows, 2 * f, d, false)
      swigluForward(a.gu, a.h, rows, f)
      xout.set(a.x1.subarray(0, rows * d))
      gemmNT(a.h, 0, f, params, o.wdown, f, xout, 0, d, rows, d, f, true)
    }
    rmsNormForward(
      this.xs[c.numLayers] as Floats,
      params,
      this.layout.finalNorm,
      this.xf,
      this.invf,
      rows,
      d,
      eps,
    )
    gemmNT(this.xf, 0, d, params, this.layout.embed, d, this.logits, 0, v, rows, v, d, false)
    const withGrad = options.gradScale !== undefined
    this.state = { batch, seqLen, withGrad }
    return crossEntropy(this.logits, targets, rows, v, seqLen, options.firstRow ?? 0, options.gradScale)
  }

  /** Adds the gradient of the last forward's scaled loss to `grads` (same layout as params). */
  backward(params: Floats, grads: Floats): void {
    const st = this.state
    if (st === undefined || !st.withGrad) {
      throw new TrainError('ERR_TRAIN_CONFIG', 'backward needs a forward with a gradient scale first')
    }
    this.state = undefined
    const c = this.config
    const { hiddenSize: d, intermediateSize: f, vocabSize: v } = c
    const layout = this.layout
    const { qDim, qkvDim } = layout
    const rows = st.batch * st.seqLen
    const shape = this.shape(st.batch, st.seqLen)
    const { dx, dxn, dqkv, dattn, dgu, dh } = this
    // Tied head: the embedding gets gradient from the LM head here and from the lookup at the end.
    this.linearBackward(params, grads, this.logits, this.xf, d, v, layout.embed, dxn, rows)
    dx.fill(0, 0, rows * d)
    const xL = this.xs[c.numLayers] as Floats
    rmsNormBackward(dxn, xL, params, layout.finalNorm, this.invf, dx, grads, layout.finalNorm, rows, d)
    for (let l = c.numLayers - 1; l >= 0; l--) {
      const o = layout.layers[l] as (typeof layout.layers)[number]
      const a = this.acts[l] as LayerActivations
      // xout = x1 + swiglu(norm2(x1)) Wdown^T
      this.linearBackward(params, grads, dx, a.h, f, d, o.wdown, dh, rows)
      swigluBackward(dh, a.gu, dgu, rows, f)
      this.linearBackward(params, grads, dgu, a.xn2, d, 2 * f, o.wgu, dxn, rows)
      rmsNormBackward(dxn, a.x1, params, o.norm2, a.inv2, dx, grads, o.norm2, rows, d)
      // x1 = xin + attention(rope(norm1(xin) Wqkv^T)) Wo^T
      this.linearBackward(params, grads, dx, a.attn, qDim, d, o.wo, dattn, rows)
      dqkv.fill(0, 0, rows * qkvDim)
      attentionBackward(a.qkv, a.probs, a.attn, dattn, dqkv, shape, this.scratch)
      rope(dqkv, rows, qkvDim, 0, c.numHeads, c.headDim, st.seqLen, this.cos, this.sin, -1)
      rope(dqkv, rows, qkvDim, qDim, c.numKvHeads, c.headDim, st.seqLen, this.cos, this.sin, -1)
      this.linearBackward(params, grads, dqkv, a.xn1, d, qkvDim, o.wqkv, dxn, rows)
      rmsNormBackward(dxn, this.xs[l] as Floats, params, o.norm1, a.inv1, dx, grads, o.norm1, rows, d)
    }
    for (let r = 0; r < rows; r++) {
      const dst = layout.embed + (this.ids[r] as number) * d
      for (let i = 0; i < d; i++) grads[dst + i] = (grads[dst + i] as number) + (dx[r * d + i] as number)
    }
  }

  /**
   * For y = x W^T with W [out, in] at params[wOff]: dxOut = dy W (overwritten) and
   * grads[W] += dy^T x. Both products go through transposes so gemmNT reads rows.
   */
  private linearBackward(
    params: Floats,
    grads: Floats,
    dy: Floats,
    x: Floats,
    inDim: number,
    outDim: number,
    wOff: number,
    dxOut: Floats,
    rows: number,
  ): void {
    const { wT, tA, tB } = this
    transpose(params, wOff, inDim, outDim, inDim, wT, 0, outDim)
    gemmNT(dy, 0, outDim, wT, 0, outDim, dxOut, 0, inDim, rows, inDim, outDim, false)
    transpose(dy, 0, outDim, rows, outDim, tA, 0, rows)
    transpose(x, 0, inDim, rows, inDim, tB, 0, rows)
    gemmNT(tA, 0, rows, tB, 0, rows, grads, wOff, inDim, outDim, inDim, rows, true)
  }

  private shape(batch: number, seqLen: number): AttentionShape {
    const c = this.config
    return { batch, seqLen, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim }
  }
}
