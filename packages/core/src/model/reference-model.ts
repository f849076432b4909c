import {
  GenerationError,
  GraphBuildError,
  ModelConfigError,
  ModelFileError,
  TensorError,
  TokenizerError,
} from '../errors.js'
import { elementCount } from '../weights/tensor.js'
import type { ModelConfig } from './model-config.js'
import { ReferenceKvCache } from './reference-kv-cache.js'
import { ropeCaches } from './rope.js'
import { EMBED_TOKENS, expectedWeightShapes, FINAL_NORM, LM_HEAD, layerWeightNames } from './weight-names.js'

export { ReferenceKvCache }

/** y[r] = bias[r] + sum_c w[r, c] * x[xOff + c], for w stored [rows, cols] (PyTorch Linear layout). */
function linear(
  w: Float32Array,
  bias: Float32Array | undefined,
  rows: number,
  cols: number,
  x: Float64Array,
  xOff: number,
  y: Float64Array,
  yOff: number,
): void {
  for (let r = 0; r < rows; r++) {
    let acc = 0
    const base = r * cols
    for (let c = 0; c < cols; c++) acc += (w[base + c] as number) * (x[xOff + c] as number)
    y[yOff + r] = acc + (bias === undefined ? 0 : (bias[r] as number))
  }
}

function rmsNorm(
  x: Float64Array,
  off: number,
  n: number,
  w: Float32Array,
  eps: number,
  out: Float64Array,
): void {
  let sumSq = 0
  for (let i = 0; i < n; i++) sumSq += (x[off + i] as number) ** 2
  const inv = 1 / Math.sqrt(sumSq / n + eps)
  for (let i = 0; i < n; i++) out[i] = (x[off + i] as number) * inv * (w[i] as number)
}

/**
 * Slow, obviously correct Llama forward pass: the ground truth tests compare engines against.
 * Arithmetic is float64; the residual stream is rounded to float32 after every layer, exactly
 * where a pipeline would ship it between stages, so splitting at any layer boundary is exact.
 */
export class ReferenceModel {
  readonly config: ModelConfig
  private readonly weights: ReadonlyMap<string, Float32Array>
  private readonly cos: Float32Array
  private readonly sin: Float32Array

  /**
   * `only`, when given, limits the model to the tensors it accepts (e.g. one layer's, streamed a
   * layer at a time); calling on anything that needs another tensor is the caller's bug.
   */
  constructor(
    config: ModelConfig,
    weights: ReadonlyMap<string, Float32Array>,
    only?: (name: string) => boolean,
  ) {
    checkConfig(config)
    for (const [name, shape] of expectedWeightShapes(config)) {
      if (only !== undefined && !only(name)) continue
      const w = weights.get(name)
      if (w === undefined) {
        throw new ModelFileError('ERR_MODEL_TENSOR_MISSING', 'reference weights', 'tensor missing', {
          tensor: name,
        })
      }
      if (!(w instanceof Float32Array) || w.length !== elementCount(shape)) {
        throw new ModelFileError(
          'ERR_MODEL_FILE_SHAPE',
          'reference weights',
          `expected a Float32Array of ${elementCount(shape)} elements (shape [${shape.join(', ')}])`,
          { tensor: name },
        )
      }
    }
    this.config = config
    this.weights = weights
    const { cos, sin } = ropeCaches(config)
    this.cos = cos
    this.sin = sin
  }

  createCache(): ReferenceKvCache {
    return new ReferenceKvCache(this.config.numLayers, this.config.numKvHeads * this.config.headDim)
  }

  /** Embedding rows for `ids`: [ids.length * hiddenSize]. */
  embed(ids: readonly number[]): Float32Array {
    const { hiddenSize: h, vocabSize } = this.config
    if (!Array.isArray(ids) || ids.length === 0)
      throw new TensorError('ERR_TENSOR_SHAPE', 'need at least one token id')
    const table = this.w(EMBED_TOKENS)
    const out = new Float32Array(ids.length * h)
    ids.forEach((id, s) => {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new TokenizerError(`token id ${id} out of range [0, ${vocabSize})`)
      }
      out.set(table.subarray(id * h, (id + 1) * h), s * h)
    })
    return out
  }

  /** Runs layers [from, to) over `seqLen` positions starting at `startPos`, appending to `cache`. */
  runLayers(
    hidden: Float32Array,
    seqLen: number,
    startPos: number,
    from: number,
    to: number,
    cache: ReferenceKvCache,
  ): Float32Array {
    const { hiddenSize: h, numLayers, maxContext } = this.config
    if (!Number.isInteger(seqLen) || seqLen < 1) {
      throw new TensorError('ERR_TENSOR_SHAPE', `seqLen must be a positive integer, got ${seqLen}`)
    }
    if (!(hidden instanceof Float32Array) || hidden.length !== seqLen * h) {
      throw new TensorError('ERR_TENSOR_SHAPE', `hidden must be a Float32Array of ${seqLen} x ${h} elements`)
    }
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > numLayers || from > to) {
      throw new GraphBuildError(`invalid layer range [${from}, ${to}) for a ${numLayers}-layer model`)
    }
    if (!(cache instanceof ReferenceKvCache) || cache.numLayers !== numLayers || cache.kvDim !== this.kvDim) {
      throw new GenerationError('ERR_STEP_ORDER', 'KV cache was not created by this model')
    }
    if (!Number.isInteger(startPos) || startPos < 0) {
      throw new GenerationError('ERR_STEP_ORDER', `startPos must be a non-negative integer, got ${startPos}`)
    }
    if (startPos + seqLen > maxContext) {
      throw new GenerationError(
        'ERR_CONTEXT_OVERFLOW',
        `positions ${startPos}..${startPos + seqLen - 1} exceed the context of ${maxContext} tokens`,
      )
    }
    for (let l = from; l < to; l++) {
      if (cache.layerLength(l) !== startPos) {
        throw new GenerationError(
          'ERR_STEP_ORDER',
          `layer ${l} has ${cache.layerLength(l)} cached positions but startPos is ${startPos}`,
        )
      }
    }
    const x = Float64Array.from(hidden)
    for (let l = from; l < to; l++) {
      this.layer(l, x, seqLen, startPos, cache)
      for (let i = 0; i < x.length; i++) x[i] = Math.fround(x[i] as number)
    }
    return Float32Array.from(x)
  }

  /** Final RMSNorm + LM head for the LAST position only: [vocabSize]. */
  logits(hidden: Float32Array, seqLen: number): Float32Array {
    const { hiddenSize: h, vocabSize: v } = this.config
    if (!Number.isInteger(seqLen) || seqLen < 1) {
      throw new TensorError('ERR_TENSOR_SHAPE', `seqLen must be a positive integer, got ${seqLen}`)
    }
    if (!(hidden instanceof Float32Array) || hidden.length !== seqLen * h) {
      throw new TensorError('ERR_TENSOR_SHAPE', `hidden must be a Float32Array of ${seqLen} x ${h} elements`)
    }
    const last = Float64Array.from(hidden.subarray((seqLen - 1) * h))
    const normed = new Float64Array(h)
    rmsNorm(last, 0, h, this.w(FINAL_NORM), this.config.rmsNormEps, normed)
    const head = this.config.tieWordEmbeddings ? this.w(EMBED_TOKENS) : this.w(LM_HEAD)
    const out = new Float64Array(v)
    linear(head, undefined, v, h, normed, 0, out, 0)
    return Float32Array.from(out)
  }

  /** Embeds `ids`, runs every layer at position cache.length onwards, returns last-position logits. */
  forward(ids: readonly number[], cache: ReferenceKvCache): Float32Array {
    const x = this.embed(ids)
    const hidden = this.runLayers(x, ids.length, cache.length, 0, this.config.numLayers, cache)
    return this.logits(hidden, ids.length)
  }

  private get kvDim(): number {
    return this.config.numKvHeads * this.config.headDim
  }

  private w(name: string): Float32Array {
    return this.weights.get(name) as Float32Array
  }

  /** One decoder layer, in place on the float64 residual stream `x` [seqLen, hidden]. */
  private layer(l: number, x: Float64Array, seqLen: number, startPos: number, cache: ReferenceKvCache): void {
    const c = this.config
    const { hiddenSize: h, numHeads, numKvHeads, headDim, intermediateSize: f } = c
    const qDim = numHeads * headDim
    const kvDim = this.kvDim
    const half = headDim / 2
    const group = numHeads / numKvHeads
    const n = layerWeightNames(l)
    const bias = (name: string) => (c.attentionBias ? this.w(name) : undefined)

    const normed = new Float64Array(h)
    const q = new Float64Array(seqLen * qDim)
    const k = new Float64Array(seqLen * kvDim)
    const v = new Float64Array(seqLen * kvDim)
    for (let s = 0; s < seqLen; s++) {
      rmsNorm(x, s * h, h, this.w(n.inputNorm), c.rmsNormEps, normed)
      linear(this.w(n.q), bias(n.qBias), qDim, h, normed, 0, q, s * qDim)
      linear(this.w(n.k), bias(n.kBias), kvDim, h, normed, 0, k, s * kvDim)
      linear(this.w(n.v), bias(n.vBias), kvDim, h, normed, 0, v, s * kvDim)
      const pos = startPos + s
      for (let hd = 0; hd < numHeads; hd++) this.rotate(q, s * qDim + hd * headDim, pos, half)
      for (let hd = 0; hd < numKvHeads; hd++) this.rotate(k, s * kvDim + hd * headDim, pos, half)
    }
    const [keys, values] = cache.append(l, k, v, seqLen)

    const scale = 1 / Math.sqrt(headDim)
    const attn = new Float64Array(qDim)
    const attnOut = new Float64Array(h)
    const scores = new Float64Array(startPos + seqLen)
    const gate = new Float64Array(f)
    const up = new Float64Array(f)
    const mlpOut = new Float64Array(h)
    for (let s = 0; s < seqLen; s++) {
      const visible = startPos + s + 1 // causal: keys 0..pos inclusive
      for (let hd = 0; hd < numHeads; hd++) {
        const qOff = s * qDim + hd * headDim
        const kvOff = Math.floor(hd / group) * headDim
        let max = Number.NEGATIVE_INFINITY
        for (let t = 0; t < visible; t++) {
          let dot = 0
          for (let i = 0; i < headDim; i++)
            dot += (q[qOff + i] as number) * (keys[t * kvDim + kvOff + i] as number)
          scores[t] = dot * scale
          max = Math.max(max, dot * scale)
        }
        let sum = 0
        for (let t = 0; t < visible; t++) {
          scores[t] = Math.exp((scores[t] as number) - max)
          sum += scores[t] as number
        }
        for (let i = 0; i < headDim; i++) {
          let acc = 0
          for (let t = 0; t < visible; t++)
            acc += (scores[t] as number) * (values[t * kvDim + kvOff + i] as number)
          attn[hd * headDim + i] = acc / sum
        }
      }
      linear(this.w(n.o), undefined, h, qDim, attn, 0, attnOut, 0)
      for (let i = 0; i < h; i++) x[s * h + i] = (x[s * h + i] as number) + (attnOut[i] as number)

      rmsNorm(x, s * h, h, this.w(n.postAttentionNorm), c.rmsNormEps, normed)
      linear(this.w(n.gate), undefined, f, h, normed, 0, gate, 0)
      linear(this.w(n.up), undefined, f, h, normed, 0, up, 0)
      for (let i = 0; i < f; i++) {
        const g = gate[i] as number
        gate[i] = (g / (1 + Math.exp(-g))) * (up[i] as number)
      }
      linear(this.w(n.down), undefined, h, f, gate, 0, mlpOut, 0)
      for (let i = 0; i < h; i++) x[s * h + i] = (x[s * h + i] as number) + (mlpOut[i] as number)
    }
  }

  /** Non-interleaved RoPE ("rotate_half") on one head vector at `off`, in place. */
  private rotate(vec: Float64Array, off: number, pos: number, half: number): void {
    for (let i = 0; i < half; i++) {
      const cos = this.cos[pos * half + i] as number
      const sin = this.sin[pos * half + i] as number
      const a = vec[off + i] as number
      const b = vec[off + i + half] as number
      vec[off + i] = a * cos - b * sin
      vec[off + i + half] = b * cos + a * sin
    }
  }
}

function checkConfig(c: ModelConfig): void {
  const integers = [
    'hiddenSize',
    'numLayers',
    'numHeads',
    'numKvHeads',
    'headDim',
    'intermediateSize',
    'vocabSize',
    'maxContext',
  ] as const
  for (const key of integers) {
    const value: unknown = c[key]
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      throw new ModelConfigError(`${key} must be a positive integer, got ${String(value)}`)
    }
  }
  if (c.numHeads % c.numKvHeads !== 0) {
    throw new ModelConfigError(`numHeads (${c.numHeads}) must be a multiple of numKvHeads (${c.numKvHeads})`)
  }
  if (c.headDim % 2 !== 0) throw new ModelConfigError(`headDim must be even for RoPE, got ${c.headDim}`)
  if (!(c.ropeTheta > 0) || !(c.rmsNormEps > 0)) {
    throw new ModelConfigError('ropeTheta and rmsNormEps must be positive')
  }
}
