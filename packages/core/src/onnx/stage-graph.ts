import { GraphBuildError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import { ropeCaches } from '../model/rope.js'
import {
  EMBED_TOKENS,
  FINAL_NORM,
  LM_HEAD,
  layerWeightNames,
  layerWeightShapes,
} from '../model/weight-names.js'
import { isInt4Weight } from '../quant/weight-encoding.js'
import type { WeightProvider } from '../weights/weight-provider.js'
import { matMulNBits } from './matmul-nbits.js'
import { OnnxGraph } from './onnx-graph.js'
import { stageIo } from './stage-io.js'

export interface StageGraphInit {
  readonly config: ModelConfig
  /** First layer of the stage (inclusive). */
  readonly layerStart: number
  /** Last layer of the stage (exclusive). */
  readonly layerEnd: number
  /** Candidates returned by the last stage (clamped to the vocabulary). */
  readonly topK?: number
  /** Test hook: the last stage also returns the full logits of the last position. */
  readonly emitLogits?: boolean
  /**
   * Keep weights out of the protobuf (which cannot exceed 2 GB) in an external blob. Loads
   * faster and with a lower peak; the runtime must be able to resolve the blob.
   */
  readonly externalData?: boolean
}

export interface StageGraph {
  /** The serialised ModelProto. */
  readonly bytes: Uint8Array
  /** Initializers moved out of the model, when built with externalData; read as `location`. */
  readonly external?: ExternalData
  readonly isFirst: boolean
  readonly isLast: boolean
  readonly topK: number
}

export interface ExternalData {
  /** File name the model refers to, relative to the model file. */
  readonly location: string
  /** The blob, in order; concatenated they are `bytes` long. */
  readonly chunks: readonly Uint8Array[]
  readonly bytes: number
}

export const EXTERNAL_DATA_LOCATION = 'weights.bin'

export const DEFAULT_TOP_K = 64

/**
 * Emits the ONNX model for layers [layerStart, layerEnd).
 *
 * Every layer boundary is computed the same way (Add, then SimplifiedLayerNormalization of
 * the sum) whether or not a stage boundary falls there, so the arithmetic - and therefore
 * greedy tokens - are bit-identical for any partitioning. Inside a layer the attention
 * residual and post-attention norm use the fused SkipSimplifiedLayerNormalization.
 *
 * Weights are stored [out, in] (PyTorch layout) in fp32 or fp16 and transposed/cast by
 * nodes that ONNX Runtime constant-folds at session creation; compute is fp32. Under an int4
 * config the linear projections are MatMulNBits nodes over the stored 4-bit blocks instead
 * (activations stay fp32).
 */
export async function buildStageGraph(init: StageGraphInit, weights: WeightProvider): Promise<StageGraph> {
  const { config, layerStart: a, layerEnd: b } = init
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b > config.numLayers || a >= b) {
    throw new GraphBuildError(`invalid layer range [${a}, ${b}) for a model of ${config.numLayers} layers`)
  }
  const topK = Math.min(init.topK ?? DEFAULT_TOP_K, config.vocabSize)
  if (!Number.isInteger(topK) || topK < 1) throw new GraphBuildError(`topK must be a positive integer`)

  const io = stageIo(config, a, b)
  const g = new OnnxGraph(`butterfly_stage_${a}_${b}`)
  const { hiddenSize: H, numHeads, numKvHeads, headDim } = config
  const eps = { float: config.rmsNormEps }

  /** Adds a weight as an initializer; `transpose` turns PyTorch's [out, in] into MatMul's [in, out]. */
  const loaded = new Map<string, string>()
  const load = async (name: string, shape: readonly number[], transpose = false): Promise<string> => {
    const key = `${name}${transpose ? '^T' : ''}`
    const done = loaded.get(key)
    if (done !== undefined) return done
    const t = await weights(name, shape)
    if (t.dtype !== 'F32' && t.dtype !== 'F16') {
      throw new GraphBuildError(`tensor ${name}: dtype ${t.dtype} is not supported by the stage graph`)
    }
    const [rows = 1, cols = 1] = shape
    const data = transpose ? transpose2d(t.data, rows, cols, t.dtype === 'F32' ? 4 : 2) : t.data
    const dims = transpose ? [cols, rows] : shape
    const stored = g.constant(name, t.dtype === 'F32' ? 'float32' : 'float16', dims, data)
    const value = t.dtype === 'F32' ? stored : g.op1('Cast', [stored], { to: 1 })
    loaded.set(key, value)
    return value
  }
  const linear = async (
    x: string,
    name: string,
    shape: readonly number[],
    bias?: string,
  ): Promise<string> => {
    const y = isInt4Weight(config, name)
      ? await matMulNBits(g, x, config, weights, name, shape)
      : g.op1('MatMul', [x, await load(name, shape, true)])
    return bias === undefined ? y : g.op1('Add', [y, await load(bias, [shape[0] ?? 0])])
  }

  const positions = g.input(io.positionIds, 'int64', [1, 'seq'])
  const seqlensK = g.input(io.seqlensK, 'int32', [1])
  const totalLen = g.input(io.totalSequenceLength, 'int32', [1])
  const { cos, sin } = ropeCaches(config)
  const half = headDim / 2
  const cosCache = g.constant('rope_cos', 'float32', [config.maxContext, half], bytesOf(cos))
  const sinCache = g.constant('rope_sin', 'float32', [config.maxContext, half], bytesOf(sin))

  let hidden: string
  if (io.isFirst) {
    const ids = g.input(io.inputIds, 'int64', [1, 'seq'])
    const table = await load(EMBED_TOKENS, [config.vocabSize, H])
    hidden = g.op1('Gather', [table, ids], { axis: 0 })
  } else {
    hidden = g.input(io.hiddenIn, 'float32', [1, 'seq', H])
  }

  const shapes = new Map<string, readonly number[]>()
  for (let layer = a; layer < b; layer++) {
    for (const [n, s] of layerWeightShapes(config, layer)) shapes.set(n, s)
  }
  const shapeOf = (n: string): readonly number[] => shapes.get(n) ?? []

  for (let layer = a; layer < b; layer++) {
    const n = layerWeightNames(layer)
    const kv = io.layers[layer - a]
    if (kv === undefined) throw new GraphBuildError(`missing kv names for layer ${layer}`)
    const normed = g.op1('SimplifiedLayerNormalization', [hidden, await load(n.inputNorm, [H])], {
      axis: -1,
      epsilon: eps,
    })
    const bias = (name: string) => (config.attentionBias ? name : undefined)
    const q = await linear(normed, n.q, shapeOf(n.q), bias(n.qBias))
    const k = await linear(normed, n.k, shapeOf(n.k), bias(n.kBias))
    const v = await linear(normed, n.v, shapeOf(n.v), bias(n.vBias))
    const rope = (x: string, heads: number) =>
      g.op1('RotaryEmbedding', [x, positions, cosCache, sinCache], { interleaved: 0, num_heads: heads }, true)
    const pastK = g.input(kv.pastKey, 'float32', [1, numKvHeads, 'capacity', headDim])
    const pastV = g.input(kv.pastValue, 'float32', [1, numKvHeads, 'capacity', headDim])
    // The KV cache lives in the executor as a [1, kvHeads, capacity, headDim] buffer fed as
    // past; GQA reads its first seqlens_k + 1 - S rows. Its present outputs stay inside the
    // graph: only the new rows leave it, and the executor appends them. (onnxruntime-node
    // copies every fetched output into fresh memory, so fetching the whole cache each step
    // would cost O(context) allocation per token.)
    const kRot = rope(k, numKvHeads)
    const [attn] = g.op(
      'GroupQueryAttention',
      [rope(q, numHeads), kRot, v, pastK, pastV, seqlensK, totalLen],
      {
        attrs: { num_heads: numHeads, kv_num_heads: numKvHeads, scale: { float: 1 / Math.sqrt(headDim) } },
        outputCount: 3,
        ms: true,
      },
    )
    g.output(kRot, kv.newKey, 'float32', [1, 'seq', numKvHeads * headDim])
    g.output(v, kv.newValue, 'float32', [1, 'seq', numKvHeads * headDim])
    const attnOut = await linear(attn as string, n.o, shapeOf(n.o))
    // Outputs: normed, mean, inv_std_var, input+skip (the new residual stream).
    const [normed2, , , residual] = g.op(
      'SkipSimplifiedLayerNormalization',
      [attnOut, hidden, await load(n.postAttentionNorm, [H])],
      { attrs: { epsilon: eps }, outputCount: 4, ms: true },
    )
    const gate = await linear(normed2 as string, n.gate, shapeOf(n.gate))
    const up = await linear(normed2 as string, n.up, shapeOf(n.up))
    const act = g.op1('Mul', [g.op1('Mul', [gate, g.op1('Sigmoid', [gate])]), up])
    const down = await linear(act, n.down, shapeOf(n.down))
    hidden = g.op1('Add', [down, residual as string])
  }

  if (!io.isLast) {
    g.output(hidden, io.hiddenOut, 'float32', [1, 'seq', H])
    return finish(g, init, { isFirst: io.isFirst, isLast: false, topK })
  }

  // Only the last position is sampled, so the LM head runs on one row even during prefill.
  const last = g.op1('Slice', [
    hidden,
    g.constantInt64('s', [-1]),
    g.constantInt64('e', [2 ** 53 - 1]),
    g.constantInt64('ax', [1]),
  ])
  const normedLast = g.op1('SimplifiedLayerNormalization', [last, await load(FINAL_NORM, [H])], {
    axis: -1,
    epsilon: eps,
  })
  const headName = config.tieWordEmbeddings ? EMBED_TOKENS : LM_HEAD
  // Gemm with transB reads the [vocab, hidden] table as stored, so a tied head shares the
  // embedding initializer instead of holding a transposed copy.
  const row = g.op1('Reshape', [normedLast, g.constantInt64('shape', [1, H])])
  const headShape = [config.vocabSize, H]
  const logits = isInt4Weight(config, headName)
    ? await matMulNBits(g, row, config, weights, headName, headShape)
    : g.op1('Gemm', [row, await load(headName, headShape)], { transB: 1 })
  const temperature = g.input(io.temperature, 'float32', [1])
  const [values, ids] = g.op('TopK', [logits, g.constantInt64('k', [topK])], {
    attrs: { axis: -1, largest: 1, sorted: 1 },
    outputCount: 2,
  })
  const lse = g.op1('ReduceLogSumExp', [g.op1('Div', [logits, temperature])], { axes: [-1], keepdims: 0 })
  g.output(values as string, io.topkValues, 'float32', [1, topK])
  g.output(ids as string, io.topkIds, 'int64', [1, topK])
  g.output(lse, io.logSumExp, 'float32', [1])
  if (init.emitLogits) g.output(logits, io.logits, 'float32', [1, config.vocabSize])
  return finish(g, init, { isFirst: io.isFirst, isLast: true, topK })
}

function finish(
  g: OnnxGraph,
  init: StageGraphInit,
  meta: Omit<StageGraph, 'bytes' | 'external'>,
): StageGraph {
  if (!init.externalData) return { ...meta, bytes: g.toBytes() }
  const { model, data, dataBytes } = g.toExternal(EXTERNAL_DATA_LOCATION)
  return {
    ...meta,
    bytes: model,
    external: { location: EXTERNAL_DATA_LOCATION, chunks: data, bytes: dataBytes },
  }
}

/** Row-major [rows, cols] → [cols, rows] for 2- or 4-byte elements. */
function transpose2d(src: Uint8Array, rows: number, cols: number, elemBytes: 2 | 4): Uint8Array {
  const out = new Uint8Array(src.byteLength)
  const copy = src.byteOffset % elemBytes === 0 ? src : src.slice()
  const n = rows * cols
  const from =
    elemBytes === 4
      ? new Uint32Array(copy.buffer, copy.byteOffset, n)
      : new Uint16Array(copy.buffer, copy.byteOffset, n)
  const to = elemBytes === 4 ? new Uint32Array(out.buffer, 0, n) : new Uint16Array(out.buffer, 0, n)
  for (let r = 0; r < rows; r++) {
    const base = r * cols
    for (let c = 0; c < cols; c++) to[c * rows + r] = from[base + c] as number
  }
  return out
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
}
