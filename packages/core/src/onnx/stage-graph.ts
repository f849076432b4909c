import { GraphBuildError } from '../errors.js'
import { architectureTraits, type LayerAttention } from '../model/architecture.js'
import { type ModelConfig, rotaryDimOf } from '../model/model-config.js'
import { ropeCaches } from '../model/rope.js'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, layerWeightShapes } from '../model/weight-names.js'
import { isInt4Weight } from '../quant/weight-encoding.js'
import type { WeightProvider } from '../weights/weight-provider.js'
import { type Int4Compute, matMulNBits } from './matmul-nbits.js'
import { OnnxGraph } from './onnx-graph.js'
import { stageIo } from './stage-io.js'
import { emitLayer, type LayerContext, normWeight } from './stage-layer.js'
import { type SlidingWindow, slidingWindow } from './window-attention.js'

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
  /** How an int4 model's MatMulNBits multiply (default 'fp32'); ignored by other models. */
  readonly int4Compute?: Int4Compute
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
 * residual and the MLP's input norm use the fused SkipSimplifiedLayerNormalization. Every
 * family trait (stage-layer.ts) lives inside a layer or in the first/last stage's embedding
 * and head, and a layer's constants (norm weights, RoPE tables of its kind, the sliding mask)
 * do not depend on which stage holds it, so the invariant holds for all of them.
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
  const { hiddenSize: H } = config
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
      ? await matMulNBits(g, x, config, weights, name, shape, init.int4Compute)
      : g.op1('MatMul', [x, await load(name, shape, true)])
    return bias === undefined ? y : g.op1('Add', [y, await load(bias, [shape[0] ?? 0])])
  }

  const positions = g.input(io.positionIds, 'int64', ['batch', 'seq'])
  const seqlensK = g.input(io.seqlensK, 'int32', ['batch'])
  const totalLen = g.input(io.totalSequenceLength, 'int32', [1])
  // One cos/sin pair per layer kind the stage holds; Gemma 3's sliding layers have their own.
  // Each is [maxContext, rotaryDim / 2] fp32: 32 MB for Llama 3.2's 131072 positions.
  const caches = new Map<string, { cos: string; sin: string }>()
  const ropeCache = (kind: LayerAttention): { cos: string; sin: string } => {
    const key = kind === 'sliding' && config.localRopeTheta !== undefined ? 'sliding' : 'full'
    let cache = caches.get(key)
    if (cache === undefined) {
      const { cos, sin } = ropeCaches(config, key)
      const dims = [config.maxContext, rotaryDimOf(config) / 2]
      cache = {
        cos: g.constant(`rope_cos_${key}`, 'float32', dims, bytesOf(cos)),
        sin: g.constant(`rope_sin_${key}`, 'float32', dims, bytesOf(sin)),
      }
      caches.set(key, cache)
    }
    return cache
  }

  let hidden: string
  if (io.isFirst) {
    const ids = g.input(io.inputIds, 'int64', ['batch', 'seq'])
    const table = await load(EMBED_TOKENS, [config.vocabSize, H])
    hidden = g.op1('Gather', [table, ids], { axis: 0 })
    if (architectureTraits(config.architecture).scaledEmbeddings) {
      // Gemma: sqrt(hidden) in the weights' dtype, as the reference's embed() multiplies.
      hidden = g.op1('Mul', [hidden, g.constantFloat('embed_scale', [Math.fround(Math.sqrt(H))])])
    }
  } else {
    hidden = g.input(io.hiddenIn, 'float32', ['batch', 'seq', H])
  }

  const shapes = new Map<string, readonly number[]>()
  for (let layer = a; layer < b; layer++) {
    for (const [n, s] of layerWeightShapes(config, layer)) shapes.set(n, s)
  }
  const shapeOf = (n: string): readonly number[] => shapes.get(n) ?? []

  let sliding: SlidingWindow | undefined
  const window = (): SlidingWindow => {
    sliding ??= slidingWindow(g, config, positions, totalLen)
    return sliding
  }
  const ctx: LayerContext = {
    g,
    config,
    window,
    positions,
    seqlensK,
    totalLen,
    ropeCache,
    load: (name, shape) => load(name, shape),
    linear,
    shapeOf,
  }
  for (let layer = a; layer < b; layer++) {
    const kv = io.layers[layer - a]
    if (kv === undefined) throw new GraphBuildError(`missing kv names for layer ${layer}`)
    hidden = await emitLayer(ctx, layer, hidden, kv)
  }

  if (!io.isLast) {
    g.output(hidden, io.hiddenOut, 'float32', ['batch', 'seq', H])
    return finish(g, init, { isFirst: io.isFirst, isLast: false, topK })
  }

  // The LM head runs on the last `logit_rows` positions only: 1 for a normal step (only the last
  // position is sampled, so a prefill pays for one row), the whole step when a replica answers a
  // replayed window with per-position candidates. With 1 it computes exactly the ops on exactly
  // the shapes it always did, so a normal step's top-k is bit-identical.
  const logitRows = g.input(io.logitRows, 'int64', [1])
  const tail = g.op1('Slice', [
    hidden,
    g.op1('Neg', [logitRows]),
    g.constantInt64('e', [2 ** 53 - 1]),
    g.constantInt64('ax', [1]),
  ])
  const normedTail = g.op1('SimplifiedLayerNormalization', [tail, await normWeight(ctx, FINAL_NORM, H)], {
    axis: -1,
    epsilon: eps,
  })
  const headName = config.tieWordEmbeddings ? EMBED_TOKENS : LM_HEAD
  // Gemm with transB reads the [vocab, hidden] table as stored, so a tied head shares the
  // embedding initializer instead of holding a transposed copy.
  const rows = g.op1('Reshape', [normedTail, g.constantInt64('shape', [-1, H])])
  const headShape = [config.vocabSize, H]
  const logits = isInt4Weight(config, headName)
    ? await matMulNBits(g, rows, config, weights, headName, headShape, init.int4Compute)
    : g.op1('Gemm', [rows, await load(headName, headShape)], { transB: 1 })
  // One temperature per row ([rows, 1]), so generations sampled differently share a batch.
  const temperature = g.input(io.temperature, 'float32', ['rows', 1])
  const [values, ids] = g.op('TopK', [logits, g.constantInt64('k', [topK])], {
    attrs: { axis: -1, largest: 1, sorted: 1 },
    outputCount: 2,
  })
  const lse = g.op1('ReduceLogSumExp', [g.op1('Div', [logits, temperature])], { axes: [-1], keepdims: 0 })
  g.output(values as string, io.topkValues, 'float32', ['rows', topK])
  g.output(ids as string, io.topkIds, 'int64', ['rows', topK])
  g.output(lse, io.logSumExp, 'float32', ['rows'])
  if (init.emitLogits) g.output(logits, io.logits, 'float32', ['rows', config.vocabSize])
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
  // In tiles, so reads and writes both stay within a few cache lines: the plain loop writes a
  // column at a time and took most of a 100M model's graph build (0.46 of 0.85 s). 8x8 tiles
  // measured fastest here (2.5x the plain loop; 32 and 64 gain little).
  const T = 8
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(rows, r0 + T)
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(cols, c0 + T)
      for (let r = r0; r < r1; r++) {
        const base = r * cols
        for (let c = c0; c < c1; c++) to[c * rows + r] = from[base + c] as number
      }
    }
  }
  return out
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
}
