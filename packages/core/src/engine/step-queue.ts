import type { StageStepInput, StageStepOutput } from './inference-backend.js'

/** A step waiting for the stage, or partway through it (a long prompt runs in chunks). */
export interface QueuedStep {
  readonly kind: 'step'
  readonly id: string
  readonly input: StageStepInput
  readonly signal: AbortSignal | undefined
  /** Positions of the step already run (chunked prefill). */
  done: number
  /** Outputs of the chunks run so far. */
  readonly parts: StageStepOutput[]
  resolve(out: StageStepOutput): void
  reject(err: unknown): void
}

export interface QueuedTruncate {
  readonly kind: 'truncate'
  readonly id: string
  readonly length: number
  readonly signal: AbortSignal | undefined
  resolve(): void
  reject(err: unknown): void
}

export type QueuedWork = QueuedStep | QueuedTruncate

/**
 * What a stage runs next: one batch of single-position steps, or the next chunk of one or more
 * longer steps (chunks of the same size, as many as fit in one chunk's positions).
 */
export type Tick =
  | { readonly kind: 'decode'; readonly steps: readonly QueuedStep[] }
  | { readonly kind: 'chunk'; readonly steps: readonly QueuedStep[]; readonly size: number }

/**
 * The work of many generations waiting for one stage, and the continuous-batching policy: every
 * tick takes each generation's oldest work only (so a generation's steps and truncates keep their
 * order), applies truncates at once, and then runs either every waiting single-position step as
 * one batch, or one chunk of the oldest longer step. When both are waiting they alternate, so a
 * long prompt costs the running generations one chunk's time per token, never the whole prompt,
 * and new prompts are never starved by a stream of decode steps.
 */
export class StepQueue {
  private readonly waiting: QueuedWork[] = []
  private chunkNext = false

  /** `chunk`: the most positions a prompt chunk has, and a run of chunks has together. */
  constructor(private readonly chunk = Number.POSITIVE_INFINITY) {}

  get size(): number {
    return this.waiting.length
  }

  push(work: QueuedWork): void {
    this.waiting.push(work)
  }

  /**
   * The next tick, or undefined when nothing can run. `apply` runs a truncate (synchronously,
   * between runs); work whose signal has aborted is failed with its reason; generations in
   * `busy` (partway through a run) are skipped.
   */
  next(apply: (t: QueuedTruncate) => void, busy: ReadonlySet<string>): Tick | undefined {
    const heads: QueuedStep[] = []
    const seen = new Set<string>(busy)
    for (let i = 0; i < this.waiting.length; i++) {
      const work = this.waiting[i] as QueuedWork
      if (seen.has(work.id)) continue
      if (work.signal?.aborted === true && !(work.kind === 'step' && work.done > 0)) {
        this.waiting.splice(i--, 1)
        work.reject(work.signal.reason)
        continue
      }
      if (work.kind === 'truncate') {
        this.waiting.splice(i--, 1)
        try {
          apply(work)
          work.resolve()
        } catch (err) {
          work.reject(err)
        }
        continue
      }
      seen.add(work.id)
      heads.push(work)
    }
    const decode = heads.filter((s) => s.input.seqLen === 1)
    const longer = heads.find((s) => s.input.seqLen > 1)
    if (decode.length === 0 && longer === undefined) return undefined
    const chunk = longer !== undefined && (decode.length === 0 || this.chunkNext)
    this.chunkNext = !chunk
    if (!chunk) return { kind: 'decode', steps: decode }
    // New prompts whose first chunks have the oldest's size (and want the same logit rows) run
    // together, as many as fit in one chunk's positions, so many new prompts cost about one run.
    // Later chunks run alone: GroupQueryAttention takes several rows of many positions only
    // without a past ("batch_size must be 1 when sequence_length > 1 and past context is given").
    const size = nextChunkSize(longer, this.chunk)
    const fresh = (s: QueuedStep) => s.input.startPos + s.done === 0
    if (!fresh(longer)) return { kind: 'chunk', steps: [longer], size }
    const allRows = longer.input.allRows === true
    const together = heads.filter(
      (s) =>
        s.input.seqLen > 1 &&
        fresh(s) &&
        (s.input.allRows === true) === allRows &&
        nextChunkSize(s, this.chunk) === size,
    )
    return { kind: 'chunk', steps: together.slice(0, Math.max(1, Math.floor(this.chunk / size))), size }
  }

  /** Removes a step that has finished (or failed). */
  remove(step: QueuedStep): void {
    const i = this.waiting.indexOf(step)
    if (i >= 0) this.waiting.splice(i, 1)
  }

  /** Fails everything waiting (the stage is closing). */
  failAll(err: unknown): void {
    for (const work of this.waiting.splice(0)) work.reject(err)
  }
}

/** The size of a longer step's next chunk. */
export function nextChunkSize(step: QueuedStep, chunk: number): number {
  const sizes = chunkSizes(step.input.seqLen, chunk)
  let at = 0
  for (const size of sizes) {
    if (at === step.done) return size
    at += size
  }
  return sizes[sizes.length - 1] as number
}

/**
 * How a step of `seqLen` positions is cut into chunks of at most `chunk`: as evenly as possible,
 * so no chunk is a single row (see ort-stage.ts). Depends only on the step, never on what else
 * is waiting, so a generation computes the same way alone or among others.
 */
export function chunkSizes(seqLen: number, chunk: number): number[] {
  const n = Math.ceil(seqLen / chunk)
  const base = Math.floor(seqLen / n)
  const extra = seqLen - base * n
  return Array.from({ length: n }, (_, i) => base + (i < extra ? 1 : 0))
}
