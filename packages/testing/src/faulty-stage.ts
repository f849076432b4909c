import type { StageSession, StageStepInput, StageStepOutput, TopKLogits } from '@butterfly/core'
import { ShapedStage, StageError, Xoshiro128ss } from '@butterfly/core'

/**
 * Test-only misbehaving replica around a real stage:
 * - 'honest': passes through (records calls, like every mode);
 * - 'noise': adds noise of `noise` x the output's RMS to the hidden state / top-k values (re-sorted,
 *   so the lie stays well-formed);
 * - 'zero': all-zero hidden state / a top-k of zeros naming token 0;
 * - 'stale': the previous step's output;
 * - 'other-layer': skips its layers (returns the input hidden), or, where there is no input hidden
 *   or the output must be logits, the output of `other`, a real stage over a different layer range;
 * - 'late': answers after `delayMs`; 'silent': never answers; 'gone': throws ERR_STAGE_GONE.
 * Faults start at the generation's step `fromStep` (0 = the prefill); before that it is honest.
 * Steps are counted as asked, so a rollback (truncate) does not make a liar honest again; it
 * forgets the previous output unless that lies wholly before the new length, and a 'gone'
 * replica fails truncates too once its faults started.
 */
export type FaultMode = 'honest' | 'noise' | 'zero' | 'stale' | 'other-layer' | 'late' | 'silent' | 'gone'

export interface FaultOptions {
  readonly mode: FaultMode
  readonly fromStep?: number
  readonly noise?: number
  readonly seed?: number
  readonly other?: StageSession
  readonly delayMs?: number
}

interface GenState {
  steps: number
  last: StageStepOutput | undefined
  /** Positions [0, lastEnd) were held once `last` was computed. */
  lastEnd: number
}

export class FaultyStage extends ShapedStage implements StageSession {
  /** Every step asked of this replica, in order. */
  readonly calls: Array<{ generationId: string; startPos: number; seqLen: number }> = []
  /** Every truncate asked of this replica, in order. */
  readonly truncations: Array<{ generationId: string; length: number }> = []
  private readonly gens = new Map<string, GenState>()
  private readonly rng: Xoshiro128ss

  constructor(
    private readonly inner: StageSession,
    readonly options: FaultOptions,
  ) {
    super(inner)
    this.rng = new Xoshiro128ss(options.seed ?? 1)
  }

  get activeGenerations(): number {
    return this.gens.size
  }

  async step(generationId: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    this.calls.push({ generationId, startPos: input.startPos, seqLen: input.seqLen })
    const g = this.gens.get(generationId) ?? { steps: 0, last: undefined, lastEnd: 0 }
    this.gens.set(generationId, g)
    const faulty = g.steps++ >= (this.options.fromStep ?? 0)
    const mode = faulty ? this.options.mode : 'honest'
    if (mode === 'gone') throw new StageError('ERR_STAGE_GONE', 'replica was killed')
    if (mode === 'silent') {
      return new Promise<never>((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason)))
    }
    const other = this.options.other
    const [out, alt] = await Promise.all([
      this.inner.step(generationId, input, signal),
      other?.step(generationId, input, signal),
    ])
    const previous = g.last
    g.last = out
    g.lastEnd = input.startPos + input.seqLen
    switch (mode) {
      case 'noise':
        return out.hidden !== undefined
          ? { hidden: this.noisy(out.hidden) }
          : { topk: this.noisyTopK(out.topk as TopKLogits) }
      case 'zero':
        return out.hidden !== undefined
          ? { hidden: new Float32Array(out.hidden.length) }
          : { topk: { values: new Float32Array(4), ids: new Int32Array(4), logSumExp: 0 } }
      case 'stale':
        return previous ?? out
      case 'other-layer':
        if (input.hidden !== undefined && !this.isLast) return { hidden: input.hidden }
        return alt ?? out
      case 'late':
        await new Promise((resolve) => setTimeout(resolve, this.options.delayMs ?? 1000))
        return out
      default:
        return out
    }
  }

  async truncate(generationId: string, length: number, signal?: AbortSignal): Promise<void> {
    this.truncations.push({ generationId, length })
    const g = this.gens.get(generationId)
    if (this.options.mode === 'gone' && g !== undefined && g.steps > (this.options.fromStep ?? 0)) {
      throw new StageError('ERR_STAGE_GONE', 'replica was killed')
    }
    await Promise.all([
      this.inner.truncate(generationId, length, signal),
      this.options.other?.truncate(generationId, length, signal),
    ])
    if (g !== undefined && g.lastEnd > length) {
      g.last = undefined
      g.lastEnd = 0
    }
  }

  endGeneration(generationId: string): void {
    this.gens.delete(generationId)
    this.inner.endGeneration(generationId)
    this.options.other?.endGeneration(generationId)
  }

  /** The wrapped stages are shared between tests; their owner disposes them. */
  async dispose(): Promise<void> {
    this.gens.clear()
  }

  private gaussian(): number {
    const u = Math.max(this.rng.nextFloat64(), 1e-12)
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.rng.nextFloat64())
  }

  private noisy(x: Float32Array): Float32Array {
    let sum = 0
    for (const v of x) sum += v * v
    const scale = (this.options.noise ?? 0.01) * Math.sqrt(sum / Math.max(1, x.length))
    return x.map((v) => v + scale * this.gaussian())
  }

  private noisyTopK(t: TopKLogits): TopKLogits {
    const values = this.noisy(t.values)
    const order = [...values.keys()].sort((a, b) => (values[b] as number) - (values[a] as number))
    return {
      values: Float32Array.from(order, (i) => values[i] as number),
      ids: Int32Array.from(order, (i) => t.ids[i] as number),
      logSumExp: t.logSumExp + 1,
    }
  }
}
