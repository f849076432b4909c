import type { InferenceSession } from 'onnxruntime-common'
import { GenerationError } from '../errors.js'
import { layerAttention } from '../model/model-config.js'
import { type StageIo, stageIo } from '../onnx/stage-io.js'
import { afterMicrotasks, BatchGate } from './batch-gate.js'
import { segments } from './batch-segments.js'
import {
  type BatchStats,
  checkTruncateLength,
  type StageInit,
  type StageSession,
  type StageStepInput,
  type StageStepOutput,
} from './inference-backend.js'
import type { KvPool } from './kv-pool.js'
import { KvSlots } from './kv-slots.js'
import {
  type BatchRow,
  type BatchRowOutput,
  batchRow,
  joinChunks,
  limitCandidates,
  type OrtRuntime,
  runBatch,
  toStepOutput,
} from './ort-batch.js'
import type { OrtStageComponents, OrtStageOptions } from './ort-stage-options.js'
import { openOrBuildStage } from './stage-cache.js'
import { ShapedStage } from './stage-shape.js'
import { validateStepInput } from './step-input.js'
import { type QueuedStep, StepQueue } from './step-queue.js'

export type { OrtRuntime } from './ort-batch.js'
export type { OrtStageComponents, OrtStageOptions, SessionLoader } from './ort-stage-options.js'

const DEFAULT_MAX_BATCH = 128
const DEFAULT_PREFILL_CHUNK = 128
const DEFAULT_MICRO_BATCHES = 1
/** How often, at most, a busy stage gives back KV memory it has not needed (KvPool.trim). */
const TRIM_MS = 2000
/** Padding slots a batch may run rather than split in two runs around them. */
const MAX_GAP = 2

export async function createOrtStage(
  init: StageInit,
  components: OrtStageComponents,
  options: OrtStageOptions = {},
): Promise<StageSession> {
  const external = options.externalData === true && components.loadSession !== undefined
  const sessionOptions: InferenceSession.SessionOptions = {
    // Fusions beyond 'basic' could fuse differently at stage boundaries and break the
    // bit-identity of tokens across partitionings; the graph is already fused by hand.
    graphOptimizationLevel: 'basic',
    ...options.sessionOptions,
  }
  const load = components.loadSession ?? ((g, o) => components.ort.InferenceSession.create(g.bytes, o))
  const session = await openOrBuildStage(
    { ...init, externalData: external, ...(options.int4Compute ? { int4Compute: options.int4Compute } : {}) },
    components.weights,
    sessionOptions,
    load,
    components.stageCache,
  )
  const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH
  const chunk = options.prefillChunk ?? DEFAULT_PREFILL_CHUNK
  const groups = options.microBatches ?? DEFAULT_MICRO_BATCHES
  const whole = (n: number, min: number) => Number.isInteger(n) && n >= min
  if (!(whole(maxBatch, 1) && whole(chunk, 4) && whole(groups, 1))) {
    await session.release()
    throw new GenerationError(
      'ERR_STEP_ORDER',
      'maxBatch and microBatches must be integers >= 1 and prefillChunk one >= 4',
    )
  }
  const io = stageIo(init.config, init.layerStart, init.layerEnd)
  return new OrtStage(init, io, session, components.ort, { maxBatch, chunk, groups })
}

/**
 * A stage on ONNX Runtime with continuous batching. Steps of any number of generations queue
 * here (StepQueue); whenever the session is free, one run takes the decode steps of every
 * generation waiting (each in its own KV slot, KvSlots) or one chunk of a prompt. Generations
 * join and leave between runs. Two rules keep a generation's numbers independent of its company:
 * rows never interact inside the graph, and a run never computes a single row where int4 weights
 * are involved (MatMulNBits takes a different kernel for one row than for several, while fp32
 * MatMul rows are bit-identical for any batch), so such a decode step alone runs with one padding
 * row. Sliding-window layers build one mask per run, so those models run one generation at a time.
 */
class OrtStage extends ShapedStage implements StageSession {
  private readonly kv: KvSlots
  private readonly queue: StepQueue
  private readonly gate = new BatchGate(() => performance.now())
  /** Generations with a run in flight: their next work waits for it. */
  private readonly busy = new Set<string>()
  /** Ended during a run: freed when the run is over. */
  private readonly ending = new Set<string>()
  private running = false
  private pumpQueued = false
  private trimTimer: ReturnType<typeof setTimeout> | undefined
  private disposed = false
  private stats = { runs: 0, steps: 0, widest: 0, widestPrefill: 0, padded: 0, swaps: 0 }
  private readonly padSingleRow: boolean
  private readonly maxBatch: number
  private readonly groups: number

  constructor(
    private readonly init: StageInit,
    private readonly io: StageIo,
    private readonly session: InferenceSession,
    private readonly ort: OrtRuntime,
    limits: { readonly maxBatch: number; readonly chunk: number; readonly groups: number },
  ) {
    super({ layerStart: init.layerStart, layerEnd: init.layerEnd, isFirst: io.isFirst, isLast: io.isLast })
    this.queue = new StepQueue(limits.chunk)
    this.groups = limits.groups
    const { config } = init
    this.padSingleRow = config.quantization !== undefined
    const sliding = io.layers.some((l) => layerAttention(config, l.layer) === 'sliding')
    this.maxBatch = sliding && (config.slidingWindow as number) < config.maxContext ? 1 : limits.maxBatch
    this.kv = new KvSlots({
      layers: io.layers.length,
      kvHeads: config.numKvHeads,
      headDim: config.headDim,
      maxContext: config.maxContext,
      minSlots: this.padSingleRow ? 2 : 1,
    })
  }

  get activeGenerations(): number {
    return this.kv.size
  }

  get batchStats(): BatchStats {
    return { ...this.stats, kvBytes: this.kv.bytes }
  }

  step(generationId: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    try {
      if (this.disposed) throw new GenerationError('ERR_ABORTED', 'the stage was disposed')
      signal?.throwIfAborted()
      validateStepInput(this.init.config, this.io, input)
    } catch (err) {
      return Promise.reject(err)
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ kind: 'step', id: generationId, input, signal, done: 0, parts: [], resolve, reject })
      // Prompts arriving together (one StepRequests, one batch's outputs) batch their chunks: the
      // first waits out the task so the others are queued too. Decode steps have the BatchGate.
      if (input.seqLen === 1) this.pump()
      else if (!this.pumpQueued) {
        this.pumpQueued = true
        afterMicrotasks(() => {
          this.pumpQueued = false
          this.pump()
        })
      }
    })
  }

  truncate(generationId: string, length: number, signal?: AbortSignal): Promise<void> {
    try {
      checkTruncateLength(generationId, length)
    } catch (err) {
      return Promise.reject(err)
    }
    // Queued like a step, so steps already asked for finish first. Rows past the new length stay
    // in the slot but are never fed as past again: the next step overwrites them.
    return new Promise((resolve, reject) => {
      this.queue.push({ kind: 'truncate', id: generationId, length, signal, resolve, reject })
      this.pump()
    })
  }

  endGeneration(generationId: string): void {
    // Freeing a slot moves another generation's slot (and may shrink the buffers), so while a run
    // reads them every free waits for the run to end.
    this.gate.forget(generationId)
    if (this.running) this.ending.add(generationId)
    else this.kv.end(generationId)
  }

  /** Trims the KV pools TRIM_MS from now, between runs (KvPool.trim says why not at once). */
  private trimLater(): void {
    if (this.trimTimer !== undefined || this.disposed) return
    const timer = setTimeout(() => {
      this.trimTimer = undefined
      if (!this.running) this.kv.trim()
      // Until the pools are empty: what was needed since this trim is only known at the next.
      if (this.kv.bytes > 0) this.trimLater()
    }, TRIM_MS)
    ;(timer as { unref?: () => void }).unref?.()
    this.trimTimer = timer
  }

  async dispose(): Promise<void> {
    this.disposed = true
    clearTimeout(this.trimTimer)
    this.gate.release()
    this.queue.failAll(new GenerationError('ERR_ABORTED', 'the stage was disposed'))
    this.kv.clear()
    await this.session.release()
  }

  /** Starts the next run unless one is in flight; called whenever work arrives or a run ends. */
  private pump(): void {
    if (this.running || this.disposed) return
    const tick = this.queue.next((t) => this.kv.truncate(t.id, t.length), this.busy)
    if (tick === undefined) return
    if (
      tick.kind === 'decode' &&
      !this.gate.shouldRun(new Set(tick.steps.map((s) => s.id)), () => this.pump())
    ) {
      return
    }
    this.running = true
    // MatMulNBits rows also differ with the rows around them in a prompt's run: int4 prompts run alone.
    const group = Math.ceil((tick.steps.length + this.gate.awayCount) / this.groups)
    const limit =
      tick.kind === 'chunk' ? (this.padSingleRow ? 1 : this.maxBatch) : Math.min(this.maxBatch, group)
    const steps = tick.steps.slice(0, limit)
    for (const s of steps) this.busy.add(s.id)
    const work = this.run(steps, tick.kind === 'decode' ? 1 : tick.size)
    void work.finally(() => {
      if (tick.kind === 'decode') this.gate.ran(steps.map((s) => s.id))
      for (const s of steps) this.busy.delete(s.id)
      for (const id of this.ending) this.kv.end(id)
      this.ending.clear()
      this.running = false
      this.trimLater()
      // The generations of this run queue their next step from its continuations (in-process a
      // few microtasks later): let them, so they join the next batch instead of missing it.
      afterMicrotasks(() => this.pump())
    })
  }

  /**
   * The next `size` positions of each step (every waiting decode step, or the next chunk of
   * prompts of one chunk size), batched by pool over runs of consecutive slots. A step resolves
   * once all its positions ran.
   */
  private async run(steps: readonly QueuedStep[], size: number): Promise<void> {
    // Every reserve first: one that moves a generation up a tier frees its slot, and the last
    // slot of that pool moves into it, so slots are read only once all of them are made.
    const byPool = new Map<KvPool, QueuedStep[]>()
    for (const step of steps.filter((s) => this.admit(s, size))) {
      const { pool } = this.kv.place(step.id)
      const group = byPool.get(pool)
      if (group === undefined) byPool.set(pool, [step])
      else group.push(step)
    }
    const allRows = steps[0]?.input.allRows === true
    const H = this.init.config.hiddenSize
    for (const [pool, group] of byPool) {
      // Decode runs read their generations' slots without padding between them (see gather).
      if (size === 1) this.stats.swaps += this.kv.gather(group.map((s) => s.id))
      const rows = group.map((step) => ({
        step,
        row: batchRow(step.input, this.kv.place(step.id).slot, step.done, size, H),
      }))
      rows.sort((a, b) => a.row.slot - b.row.slot)
      // Only a decode step can be a single row (a chunk has two or more).
      const padSingle = size === 1 && this.padSingleRow
      const opts = { maxBatch: this.maxBatch, maxGap: MAX_GAP, padSingle, slots: pool.slots }
      for (const seg of segments(rows, opts)) {
        const entries: Array<BatchRow | undefined> = new Array(seg.hi - seg.lo).fill(undefined)
        for (const r of seg.rows) entries[r.row.slot - seg.lo] = r.row
        this.stats.runs++
        if (size === 1) {
          this.stats.widest = Math.max(this.stats.widest, seg.rows.length)
          this.stats.padded += seg.hi - seg.lo - seg.rows.length
        } else this.stats.widestPrefill = Math.max(this.stats.widestPrefill, seg.rows.length)
        try {
          const outs = await runBatch(this.session, this.ort, this.init.config, this.io, {
            pool,
            lo: seg.lo,
            seqLen: size,
            entries,
            logitRows: allRows ? size : 1,
          })
          for (const { step, row } of seg.rows) {
            const out = outs[row.slot - seg.lo]
            if (out === undefined) throw new GenerationError('ERR_STEP_ORDER', 'the stage produced no output')
            step.done += size
            step.parts.push(toStepOutput(out, allRows))
            if (step.done === step.input.seqLen) this.finish(step, joinChunks(step.parts, allRows))
          }
        } catch (err) {
          for (const r of seg.rows) this.fail(r.step, err)
        }
      }
    }
  }

  /** Checks order and room before a step's (first) run; fails the step otherwise. */
  private admit(step: QueuedStep, size: number): boolean {
    try {
      const held = this.kv.length(step.id)
      const at = step.input.startPos + step.done
      if (!this.kv.has(step.id) && at !== 0) {
        throw new GenerationError(
          'ERR_STEP_ORDER',
          `generation ${step.id} is unknown here and does not start at 0`,
        )
      }
      if (at !== held) {
        throw new GenerationError(
          'ERR_STEP_ORDER',
          `generation ${step.id}: step starts at position ${at} but the cache holds ${held}`,
        )
      }
      this.kv.reserve(step.id, held + size)
      return true
    } catch (err) {
      this.fail(step, err)
      return false
    }
  }

  private finish(step: QueuedStep, out: BatchRowOutput | StageStepOutput | undefined): void {
    this.queue.remove(step)
    this.stats.steps++
    if (out === undefined) step.reject(new GenerationError('ERR_STEP_ORDER', 'the stage produced no output'))
    else
      step.resolve(
        limitCandidates(
          'rows' in out ? toStepOutput(out, step.input.allRows === true) : out,
          step.input.candidates,
        ),
      )
  }

  private fail(step: QueuedStep, err: unknown): void {
    this.queue.remove(step)
    step.reject(err)
  }
}
