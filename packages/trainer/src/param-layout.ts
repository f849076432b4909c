import {
  EMBED_TOKENS,
  expectedWeightShapes,
  FINAL_NORM,
  layerWeightNames,
  type ModelConfig,
  ModelFileError,
} from '@butterfly/core'
import { TrainError } from './errors.js'
import type { Floats } from './gemm.js'
import type { Rng } from './rng.js'

/** Offsets of one layer's tensors in the flat parameter vector. */
export interface LayerOffsets {
  readonly norm1: number
  /** q, k and v projections stacked as one [q + 2 kv, hidden] matrix, so one product makes all three. */
  readonly wqkv: number
  readonly wo: number
  readonly norm2: number
  /** gate and up projections stacked as one [2 ffn, hidden] matrix. */
  readonly wgu: number
  readonly wdown: number
}

/**
 * Every trainable tensor lives in one flat vector (one SharedArrayBuffer for the workers, one
 * loop for the optimizer). Row-major [out, in] matrices, as in Hugging Face checkpoints, so a
 * tensor's slice is exactly its safetensors payload.
 */
export class ParamLayout {
  readonly config: ModelConfig
  readonly embed = 0
  readonly layers: readonly LayerOffsets[]
  readonly finalNorm: number
  readonly size: number
  readonly qDim: number
  readonly kvDim: number
  readonly qkvDim: number

  constructor(config: ModelConfig) {
    checkTrainable(config)
    this.config = config
    const { hiddenSize: d, vocabSize: v, intermediateSize: f, numLayers } = config
    this.qDim = config.numHeads * config.headDim
    this.kvDim = config.numKvHeads * config.headDim
    this.qkvDim = this.qDim + 2 * this.kvDim
    let at = v * d
    const layers: LayerOffsets[] = []
    for (let l = 0; l < numLayers; l++) {
      const norm1 = at
      const wqkv = norm1 + d
      const wo = wqkv + this.qkvDim * d
      const norm2 = wo + d * this.qDim
      const wgu = norm2 + d
      const wdown = wgu + 2 * f * d
      at = wdown + d * f
      layers.push({ norm1, wqkv, wo, norm2, wgu, wdown })
    }
    this.layers = layers
    this.finalNorm = at
    this.size = at + d
  }

  /**
   * The Hugging Face tensors, as views into `params` (no copies): q/k/v and gate/up are row
   * ranges of the stacked matrices. The LM head is tied to the embedding.
   */
  tensors(params: Float32Array): Map<string, { shape: readonly number[]; data: Float32Array }> {
    const c = this.config
    const { hiddenSize: d, intermediateSize: f } = c
    const view = (off: number, n: number) => params.subarray(off, off + n)
    const out = new Map<string, { shape: readonly number[]; data: Float32Array }>()
    const shapes = expectedWeightShapes(c)
    const put = (name: string, off: number) => {
      const shape = shapes.get(name) as readonly number[]
      out.set(name, {
        shape,
        data: view(
          off,
          shape.reduce((a, b) => a * b, 1),
        ),
      })
    }
    put(EMBED_TOKENS, this.embed)
    this.layers.forEach((o, l) => {
      const n = layerWeightNames(l)
      put(n.inputNorm, o.norm1)
      put(n.q, o.wqkv)
      put(n.k, o.wqkv + this.qDim * d)
      put(n.v, o.wqkv + (this.qDim + this.kvDim) * d)
      put(n.o, o.wo)
      put(n.postAttentionNorm, o.norm2)
      put(n.gate, o.wgu)
      put(n.up, o.wgu + f * d)
      put(n.down, o.wdown)
    })
    put(FINAL_NORM, this.finalNorm)
    return out
  }

  /** Packs named tensors (e.g. read back from model.safetensors) into a flat vector. */
  pack(weights: ReadonlyMap<string, Float32Array>, source = 'weights'): Float32Array {
    const params = new Float32Array(this.size)
    for (const [name, { data }] of this.tensors(params)) {
      const w = weights.get(name)
      if (w === undefined)
        throw new ModelFileError('ERR_MODEL_TENSOR_MISSING', source, 'tensor missing', { tensor: name })
      if (w.length !== data.length) {
        throw new ModelFileError(
          'ERR_MODEL_FILE_SHAPE',
          source,
          `expected ${data.length} values, got ${w.length}`,
          {
            tensor: name,
          },
        )
      }
      data.set(w)
    }
    return params
  }

  /**
   * GPT-2 style init: N(0, 0.02) for matrices, with the two projections that write into the
   * residual stream scaled by 1/sqrt(2 layers); norm gains 1.
   */
  init(params: Floats, rng: Rng): void {
    const { hiddenSize: d, intermediateSize: f, numLayers } = this.config
    const normal = (off: number, n: number, std: number) => {
      for (let i = 0; i < n; i++) params[off + i] = rng.normal() * std
    }
    const residualStd = 0.02 / Math.sqrt(2 * numLayers)
    normal(this.embed, this.config.vocabSize * d, 0.02)
    for (const o of this.layers) {
      params.fill(1, o.norm1, o.norm1 + d)
      normal(o.wqkv, this.qkvDim * d, 0.02)
      normal(o.wo, d * this.qDim, residualStd)
      params.fill(1, o.norm2, o.norm2 + d)
      normal(o.wgu, 2 * f * d, 0.02)
      normal(o.wdown, d * f, residualStd)
    }
    params.fill(1, this.finalNorm, this.finalNorm + d)
  }

  /** Ranges [begin, end) that weight decay applies to: every matrix, no norm gain. */
  decayRanges(): Array<[number, number]> {
    const { hiddenSize: d } = this.config
    const ranges: Array<[number, number]> = [[this.embed, this.config.vocabSize * d]]
    for (const o of this.layers)
      ranges.push([o.wqkv, o.norm2], [o.wgu, o.wdown + d * this.config.intermediateSize])
    return ranges
  }
}

/** The trainer implements plain Llama: tied head, no biases. */
function checkTrainable(c: ModelConfig): void {
  if (!c.tieWordEmbeddings)
    throw new TrainError('ERR_TRAIN_CONFIG', 'the trainer only builds tied-embedding models')
  if (c.attentionBias) throw new TrainError('ERR_TRAIN_CONFIG', 'the trainer does not train attention biases')
  if (c.numHeads % c.numKvHeads !== 0 || c.headDim % 2 !== 0) {
    throw new TrainError('ERR_TRAIN_CONFIG', 'heads must be a multiple of kv heads and head size even')
  }
}
