import type { InferenceSession, Tensor } from 'onnxruntime-common'
import { GenerationError } from '../errors.js'
import { buildStageGraph, type StageGraph } from '../onnx/stage-graph.js'
import { type StageIo, stageIo } from '../onnx/stage-io.js'
import type { WeightProvider } from '../weights/weight-provider.js'
import {
  checkTruncateLength,
  type StageInit,
  type StageSession,
  type StageStepInput,
  type StageStepOutput,
} from './inference-backend.js'
import { ShapedStage } from './stage-shape.js'
import { validateStepInput } from './step-input.js'

/**
 * The part of an onnxruntime package (onnxruntime-node or onnxruntime-web) this module
 * uses. Callers pass the module they loaded, so core stays free of environment imports.
 */
export interface OrtRuntime {
  readonly InferenceSession: {
    create(model: Uint8Array, options?: InferenceSession.SessionOptions): Promise<InferenceSession>
  }
  readonly Tensor: new (
    type: 'float32' | 'int64' | 'int32',
    data: Float32Array | BigInt64Array | Int32Array,
    dims: readonly number[],
  ) => Tensor
}

/**
 * Turns a built graph into a session. Environments differ in how external weights reach the
 * runtime (a file next to the model in Node, an in-memory blob in browsers).
 */
export type SessionLoader = (
  graph: StageGraph,
  options: InferenceSession.SessionOptions,
) => Promise<InferenceSession>

export interface OrtStageComponents {
  readonly ort: OrtRuntime
  readonly weights: WeightProvider
  /** Default: the model bytes with weights inline. */
  readonly loadSession?: SessionLoader
}

export interface OrtStageOptions {
  readonly sessionOptions?: InferenceSession.SessionOptions
  /** Build with external weights; requires a `loadSession` that can resolve them. */
  readonly externalData?: boolean
}

/** KV capacity grows in blocks of this many positions, doubling, up to the model's context. */
const KV_BLOCK = 256

/** One generation's cache: per layer, [1, kvHeads, capacity, headDim] keys and values. */
interface KvState {
  length: number
  capacity: number
  keys: Float32Array[]
  values: Float32Array[]
}

/**
 * Builds the stage graph and runs it with ONNX Runtime. The KV cache of each generation is
 * held here as preallocated per-layer buffers that grow by doubling; each step feeds them
 * as past and appends the new rows the graph returns.
 */
export async function createOrtStage(
  init: StageInit,
  components: OrtStageComponents,
  options: OrtStageOptions = {},
): Promise<StageSession> {
  const external = options.externalData === true && components.loadSession !== undefined
  const graph = await buildStageGraph({ ...init, externalData: external }, components.weights)
  const sessionOptions: InferenceSession.SessionOptions = {
    // Fusions beyond 'basic' could fuse differently at stage boundaries and break the
    // bit-identity of tokens across partitionings; the graph is already fused by hand.
    graphOptimizationLevel: 'basic',
    ...options.sessionOptions,
  }
  const load = components.loadSession ?? ((g, o) => components.ort.InferenceSession.create(g.bytes, o))
  const session = await load(graph, sessionOptions)
  return new OrtStage(init, stageIo(init.config, init.layerStart, init.layerEnd), session, components.ort)
}

class OrtStage extends ShapedStage implements StageSession {
  private readonly generations = new Map<string, KvState>()
  private queue: Promise<unknown> = Promise.resolve()

  constructor(
    private readonly init: StageInit,
    private readonly io: StageIo,
    private readonly session: InferenceSession,
    private readonly ort: OrtRuntime,
  ) {
    super({ layerStart: init.layerStart, layerEnd: init.layerEnd, isFirst: io.isFirst, isLast: io.isLast })
  }

  get activeGenerations(): number {
    return this.generations.size
  }

  step(generationId: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    // One run at a time per session: steps of different generations interleave safely.
    const run = this.queue.then(() => this.runStep(generationId, input, signal))
    this.queue = run.catch(() => undefined)
    return run
  }

  truncate(generationId: string, length: number, signal?: AbortSignal): Promise<void> {
    try {
      checkTruncateLength(generationId, length)
    } catch (err) {
      return Promise.reject(err)
    }
    // Queued like a step, so steps already asked for finish first. Rows past the new length stay
    // in the buffers but are never fed as past again: the next step overwrites them.
    const run = this.queue.then(() => {
      signal?.throwIfAborted()
      const kv = this.generations.get(generationId)
      if (kv !== undefined) kv.length = Math.min(kv.length, length)
    })
    this.queue = run.catch(() => undefined)
    return run
  }

  private async runStep(id: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    signal?.throwIfAborted()
    const { config } = this.init
    validateStepInput(config, this.io, input)
    const kv = this.generations.get(id) ?? this.newState(id, input.startPos)
    if (input.startPos !== kv.length) {
      throw new GenerationError(
        'ERR_STEP_ORDER',
        `generation ${id}: step starts at position ${input.startPos} but the cache holds ${kv.length}`,
      )
    }
    const S = input.seqLen
    const total = kv.length + S
    this.ensureCapacity(kv, total)

    const T = this.ort.Tensor
    const feeds: Record<string, Tensor> = {
      [this.io.positionIds]: new T('int64', positions(kv.length, S), [1, S]),
      [this.io.seqlensK]: new T('int32', Int32Array.of(total - 1), [1]),
      [this.io.totalSequenceLength]: new T('int32', Int32Array.of(total), [1]),
    }
    if (this.io.isFirst) {
      feeds[this.io.inputIds] = new T('int64', BigInt64Array.from(input.tokens ?? [], BigInt), [1, S])
    } else {
      feeds[this.io.hiddenIn] = new T('float32', input.hidden ?? new Float32Array(0), [
        1,
        S,
        config.hiddenSize,
      ])
    }
    const rows = input.allRows === true ? S : 1
    if (this.io.isLast) {
      const t = input.temperature ?? 0
      feeds[this.io.temperature] = new T('float32', Float32Array.of(t > 0 ? t : 1), [1])
      feeds[this.io.logitRows] = new T('int64', BigInt64Array.of(BigInt(rows)), [1])
    }
    const { numKvHeads: heads, headDim } = config
    const kvDims = [1, heads, kv.capacity, headDim]
    this.io.layers.forEach((names, i) => {
      feeds[names.pastKey] = new T('float32', kv.keys[i] as Float32Array, kvDims)
      feeds[names.pastValue] = new T('float32', kv.values[i] as Float32Array, kvDims)
    })
    const out = await this.session.run(feeds)
    this.io.layers.forEach((names, i) => {
      appendRows(kv.keys[i] as Float32Array, out[names.newKey]?.data as Float32Array, kv, S, heads, headDim)
      appendRows(
        kv.values[i] as Float32Array,
        out[names.newValue]?.data as Float32Array,
        kv,
        S,
        heads,
        headDim,
      )
    })
    kv.length = total

    if (!this.io.isLast) return { hidden: out[this.io.hiddenOut]?.data as Float32Array }
    return lastStageOutput(out, this.io, rows)
  }

  private newState(id: string, startPos: number): KvState {
    if (startPos !== 0) {
      throw new GenerationError('ERR_STEP_ORDER', `generation ${id} is unknown here and does not start at 0`)
    }
    const state: KvState = { length: 0, capacity: 0, keys: [], values: [] }
    this.generations.set(id, state)
    return state
  }

  private ensureCapacity(kv: KvState, needed: number): void {
    const { config } = this.init
    if (needed > config.maxContext) {
      throw new GenerationError(
        'ERR_CONTEXT_OVERFLOW',
        `${needed} positions exceed the model's context of ${config.maxContext}`,
      )
    }
    if (needed <= kv.capacity) return
    let capacity = Math.max(KV_BLOCK, kv.capacity)
    while (capacity < needed) capacity *= 2
    capacity = Math.min(capacity, config.maxContext)
    const { numKvHeads: n, headDim: d } = config
    const grow = (old: Float32Array | undefined): Float32Array => {
      const data = new Float32Array(n * capacity * d)
      if (old !== undefined && kv.length > 0) {
        for (let h = 0; h < n; h++) {
          data.set(old.subarray(h * kv.capacity * d, (h * kv.capacity + kv.length) * d), h * capacity * d)
        }
      }
      return data
    }
    kv.keys = this.io.layers.map((_, i) => grow(kv.keys[i]))
    kv.values = this.io.layers.map((_, i) => grow(kv.values[i]))
    kv.capacity = capacity
  }

  endGeneration(generationId: string): void {
    this.generations.delete(generationId)
  }

  async dispose(): Promise<void> {
    this.generations.clear()
    await this.session.release()
  }
}

/** Copies new rows [S, heads * headDim] into the cache layout [heads, capacity, headDim] at kv.length. */
function appendRows(
  cache: Float32Array,
  rows: Float32Array,
  kv: KvState,
  S: number,
  heads: number,
  headDim: number,
) {
  const width = heads * headDim
  if (rows.length !== S * width)
    throw new GenerationError('ERR_STEP_ORDER', 'stage returned malformed KV rows')
  for (let h = 0; h < heads; h++) {
    const base = (h * kv.capacity + kv.length) * headDim
    for (let s = 0; s < S; s++) {
      cache.set(rows.subarray(s * width + h * headDim, s * width + (h + 1) * headDim), base + s * headDim)
    }
  }
}

/**
 * The last stage's [rows, topK] outputs: `topk` is always the last row (with rows = 1, the
 * arrays exactly as the runtime returned them, as before per-row candidates existed); with more
 * rows, `rowTopk` carries them all and `topk` a copy of the last, so no two fields share a buffer.
 */
function lastStageOutput(out: InferenceSession.OnnxValueMapType, io: StageIo, rows: number): StageStepOutput {
  const values = out[io.topkValues]?.data as Float32Array
  const ids = Int32Array.from(out[io.topkIds]?.data as BigInt64Array, Number)
  const lse = out[io.logSumExp]?.data as Float32Array
  const logits = out[io.logits]?.data as Float32Array | undefined
  if (values.length % rows !== 0 || ids.length !== values.length || lse.length !== rows) {
    throw new GenerationError('ERR_STEP_ORDER', 'stage returned malformed top-k rows')
  }
  if (rows === 1) {
    const result: StageStepOutput = { topk: { values, ids, logSumExp: lse[0] ?? Number.NaN } }
    return logits === undefined ? result : { ...result, logits }
  }
  const k = values.length / rows
  const last = (rows - 1) * k
  const result: StageStepOutput = {
    topk: { values: values.slice(last), ids: ids.slice(last), logSumExp: lse[rows - 1] ?? Number.NaN },
    rowTopk: { rows, k, values, ids, logSumExp: lse },
  }
  if (logits === undefined) return result
  return { ...result, logits: logits.slice(logits.length - logits.length / rows) }
}

function positions(start: number, count: number): BigInt64Array {
  const out = new BigInt64Array(count)
  for (let i = 0; i < count; i++) out[i] = BigInt(start + i)
  return out
}
