import { GenerationError, GraphBuildError, ModelFileError, TensorError, TokenizerError } from '../errors.js'
import { elementCount } from '../weights/tensor.js'
import { architectureTraits, type LayerAttention } from './architecture.js'
import { attentionScaleOf, layerAttention, type ModelConfig, rotaryDimOf } from './model-config.js'
import { ReferenceKvCache } from './reference-kv-cache.js'
import { checkReferenceConfig, gateActivation, linear, rmsNorm } from './reference-ops.js'
import { ropeCaches } from './rope.js'
import { EMBED_TOKENS, expectedWeightShapes, FINAL_NORM, LM_HEAD, layerWeightNames } from './weight-names.js'

export { ReferenceKvCache }

/**
 * Slow, obviously correct Llama forward pass: the ground truth tests compare engines against.
 * Arithmetic is float64; the residual stream is rounded to float32 after every layer, exactly
 * where a pipeline would ship it between stages, so splitting at any layer boundary is exact.
 */
export class ReferenceModel {
  readonly config: ModelConfig
  private readonly weights: ReadonlyMap<string, Float32Array>
  /** RoPE tables per layer kind (Gemma 3's sliding layers rotate with their own base). */
  private readonly rope: Readonly<Record<LayerAttention, { cos: Float32Array; sin: Float32Array }>>

  /**
   * `only`, when given, limits the model to the tensors it accepts (e.g. one layer's, streamed a
   * layer at a time); calling on anything that needs another tensor is the caller's bug.
   */
  constructor(
    config: ModelConfig,
    weights: ReadonlyMap<string, Float32Array>,
    only?: (name: string) => boolean,
  ) {
    checkReferenceConfig(config)
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
    const full = ropeCaches(config, 'full')
    this.rope = {
      full,
      sliding: config.localRopeTheta === undefined ? full : ropeCaches(config, 'sliding'),
    }
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
    // Gemma scales by sqrt(hidden) in the weights' dtype (a float32 here); the product of two
    // float32s rounded to float32 is what the graph's Mul computes too.
    const scale = architectureTraits(this.config.architecture).scaledEmbeddings
      ? Math.fround(Math.sqrt(h))
      : 1
    ids.forEach((id, s) => {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new TokenizerError(`token id ${id} out of range [0, ${vocabSize})`)
      }
      const row = table.subarray(id * h, (id + 1) * h)
      if (scale === 1) out.set(row, s * h)
      else for (let i = 0; i < h; i++) out[s * h + i] = (row[i] as number) * scale
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
    const offset = architectureTraits(this.config.architecture).normOffset
    rmsNorm(last, 0, h, this.w(FINAL_NORM), this.config.rmsNormEps, normed, offset)
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

  /**
   * One layer's projection matrices (and q/k/v biases), as [rows, cols] views. Phi-3's fused
   * tensors are split by rows, [q; k; v] and [gate; up], exactly as transformers slices them.
   */
  private projections(l: number): Projections {
    const c = this.config
    const { hiddenSize: h, intermediateSize: f } = c
    const qDim = c.numHeads * c.headDim
    const kvDim = this.kvDim
    const n = layerWeightNames(l)
    if (!architectureTraits(c.architecture).fusedProjections) {
      const bias = (name: string) => (c.attentionBias ? this.w(name) : undefined)
      return {
        q: this.w(n.q),
        k: this.w(n.k),
        v: this.w(n.v),
        qBias: bias(n.qBias),
        kBias: bias(n.kBias),
        vBias: bias(n.vBias),
        gate: this.w(n.gate),
        up: this.w(n.up),
      }
    }
    const qkv = this.w(n.qkv)
    const gateUp = this.w(n.gateUp)
    const b = c.attentionBias ? this.w(`${n.qkv.slice(0, -'weight'.length)}bias`) : undefined
    return {
      q: qkv.subarray(0, qDim * h),
      k: qkv.subarray(qDim * h, (qDim + kvDim) * h),
      v: qkv.subarray((qDim + kvDim) * h),
      qBias: b?.subarray(0, qDim),
      kBias: b?.subarray(qDim, qDim + kvDim),
      vBias: b?.subarray(qDim + kvDim),
      gate: gateUp.subarray(0, f * h),
      up: gateUp.subarray(f * h),
    }
  }

  /** One decoder layer, in place on the float64 residual stream `x` [seqLen, hidden]. */
  private layer(l: number, x: Float64Array, seqLen: number, startPos: number, cache: ReferenceKvCache): void {
    const c = this.config
    const t = architectureTraits(c.architecture)
    const { hiddenSize: h, numHeads, numKvHeads, headDim, intermediateSize: f, rmsNormEps: eps } = c
    const off = t.normOffset
    const qDim = numHeads * headDim
    const kvDim = this.kvDim
    const group = numHeads / numKvHeads
    const n = layerWeightNames(l)
    const p = this.projections(l)
    const kind = layerAttention(c, l)
    const rope = this.rope[kind]
    const rotHalf = rotaryDimOf(c) / 2

    const normed = new Float64Array(h)
    const q = new Float64Array(seqLen * qDim)
    const k = new Float64Array(seqLen * kvDim)
    const v = new Float64Array(seqLen * kvDim)
    for (let s = 0; s < seqLen; s++) {
      rmsNorm(x, s * h, h, this.w(n.inputNorm), eps, normed, off)
      linear(p.q, p.qBias, qDim, h, normed, 0, q, s * qDim)
      linear(p.k, p.kBias, kvDim, h, normed, 0, k, s * kvDim)
      linear(p.v, p.vBias, kvDim, h, normed, 0, v, s * kvDim)
      const pos = startPos + s
      // Qwen3 / Gemma 3: RMSNorm over each head of q and k, after the projection, before RoPE.
      for (let hd = 0; hd < numHeads; hd++) {
        const at = s * qDim + hd * headDim
        if (t.qkNorm) rmsNorm(q, at, headDim, this.w(n.qNorm), eps, q, off, at)
        rotate(q, at, pos, rope, rotHalf)
      }
      for (let hd = 0; hd < numKvHeads; hd++) {
        const at = s * kvDim + hd * headDim
        if (t.qkNorm) rmsNorm(k, at, headDim, this.w(n.kNorm), eps, k, off, at)
        rotate(k, at, pos, rope, rotHalf)
      }
    }
    const [keys, values] = cache.append(l, k, v, seqLen)

    const scale = attentionScaleOf(c)
    // A sliding layer's query at position p sees keys p - window + 1 .. p.
    const window = kind === 'sliding' ? (c.slidingWindow as number) : Number.POSITIVE_INFINITY
    const attn = new Float64Array(qDim)
    const attnOut = new Float64Array(h)
    const scores = new Float64Array(startPos + seqLen)
    const gate = new Float64Array(f)
    const up = new Float64Array(f)
    const mlpOut = new Float64Array(h)
    for (let s = 0; s < seqLen; s++) {
      const end = startPos + s + 1 // causal: keys up to pos inclusive
      const first = Math.max(0, end - window)
      for (let hd = 0; hd < numHeads; hd++) {
        const qOff = s * qDim + hd * headDim
        const kvOff = Math.floor(hd / group) * headDim
        let max = Number.NEGATIVE_INFINITY
        for (let j = first; j < end; j++) {
          let dot = 0
          for (let i = 0; i < headDim; i++)
            dot += (q[qOff + i] as number) * (keys[j * kvDim + kvOff + i] as number)
          scores[j] = dot * scale
          max = Math.max(max, dot * scale)
        }
        let sum = 0
        for (let j = first; j < end; j++) {
          scores[j] = Math.exp((scores[j] as number) - max)
          sum += scores[j] as number
        }
        for (let i = 0; i < headDim; i++) {
          let acc = 0
          for (let j = first; j < end; j++)
            acc += (scores[j] as number) * (values[j * kvDim + kvOff + i] as number)
          attn[hd * headDim + i] = acc / sum
        }
      }
      linear(this.w(n.o), undefined, h, qDim, attn, 0, attnOut, 0)
      // Gemma 3 norms the attention output before the residual add, and feeds the MLP through
      // pre_feedforward_layernorm; elsewhere post_attention_layernorm is the MLP's input norm.
      if (t.sandwichNorms) rmsNorm(attnOut, 0, h, this.w(n.postAttentionNorm), eps, attnOut, off)
      for (let i = 0; i < h; i++) x[s * h + i] = (x[s * h + i] as number) + (attnOut[i] as number)

      const mlpNorm = t.sandwichNorms ? n.preFeedforwardNorm : n.postAttentionNorm
      rmsNorm(x, s * h, h, this.w(mlpNorm), eps, normed, off)
      linear(p.gate, undefined, f, h, normed, 0, gate, 0)
      linear(p.up, undefined, f, h, normed, 0, up, 0)
      for (let i = 0; i < f; i++)
        gate[i] = gateActivation(t.activation, gate[i] as number) * (up[i] as number)
      linear(this.w(n.down), undefined, h, f, gate, 0, mlpOut, 0)
      if (t.sandwichNorms) rmsNorm(mlpOut, 0, h, this.w(n.postFeedforwardNorm), eps, mlpOut, off)
      for (let i = 0; i < h; i++) x[s * h + i] = (x[s * h + i] as number) + (mlpOut[i] as number)
    }
  }
}

interface Projections {
  readonly q: Float32Array
  readonly k: Float32Array
  readonly v: Float32Array
  readonly qBias: Float32Array | undefined
  readonly kBias: Float32Array | undefined
  readonly vBias: Float32Array | undefined
  readonly gate: Float32Array
  readonly up: Float32Array
}

/**
 * Non-interleaved RoPE ("rotate_half") over the first 2 * half dims of the head vector at `off`,
 * in place; the remaining dims (partial rotary) pass through.
 */
function rotate(
  vec: Float64Array,
  off: number,
  pos: number,
  table: { cos: Float32Array; sin: Float32Array },
  half: number,
): void {
  for (let i = 0; i < half; i++) {
    const cos = table.cos[pos * half + i] as number
    const sin = table.sin[pos * half + i] as number
    const a = vec[off + i] as number
    const b = vec[off + i + half] as number
    vec[off + i] = a * cos - b * sin
    vec[off + i + half] = b * cos + a * sin
  }
}
