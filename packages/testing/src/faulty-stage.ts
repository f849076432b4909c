import type { StageSession, StageStepInput, StageStepOutput, TopKLogits } from '@butterfly/core'
import { relativeDeviation, ShapedStage, StageError, Xoshiro128ss } from '@butterfly/core'
import { FaultOptionsError } from './errors.js'
import {
  colludingHidden,
  colludingTopK,
  joinRows,
  noisy,
  noisyTopK,
  splitRows,
  zeroTopK,
} from './faulty-lies.js'

/**
 * Test-only misbehaving replica around a real stage:
 * - 'honest': passes through (records calls, like every mode);
 * - 'noise': adds noise of `noise` x the output's RMS to the hidden state / top-k values (re-sorted,
 *   so the lie stays well-formed);
 * - 'collude': a lie every colluder with the same `seed` tells bit for bit on the same input:
 *   hidden, noise keyed by (seed, position) rather than a running RNG; top-k, the top-1 and top-2
 *   candidates swap names, so all colluders name the same wrong token;
 * - 'zero': all-zero hidden state / a top-k of zeros naming token 0;
 * - 'stale': the previous step's output;
 * - 'other-layer': skips its layers (returns the input hidden), or, where there is no input hidden
 *   or the output must be logits, the output of `other`, a real stage over a different layer range;
 * - 'late': answers after `delayMs`; 'silent': never answers; 'gone': throws ERR_STAGE_GONE.
 * When it lies, patiently (all of these must hold; each defaults to "always"):
 * - `fromStep`: from the generation's step `fromStep` on (0 = its first step);
 * - `honestSteps`: after the first N steps it served in total, across generations (calibration
 *   included): honest until trusted;
 * - `phase`: only on 'prefill' steps (startPos 0, seqLen > 1, not calibration), 'decode' steps
 *   (the rest: single tokens, and merged replays, seqLen > 1 from startPos > 0), the
 *   'calibration' input (recognised by content: `calibration`), or 'all';
 * - `lieRate`: on each such step with probability p (a seeded draw), honest otherwise; a merged
 *   replay of n decode positions lies with probability 1 - (1 - p)^n.
 * Steps are counted as asked, so a rollback (truncate) does not make a liar honest again; it
 * forgets the previous output unless that lies wholly before the new length, and a 'gone'
 * replica fails truncates too once its faults started.
 */
export type FaultMode =
  | 'honest'
  | 'noise'
  | 'collude'
  | 'zero'
  | 'stale'
  | 'other-layer'
  | 'late'
  | 'silent'
  | 'gone'

export type FaultPhase = 'prefill' | 'decode' | 'calibration' | 'all'

export interface FaultOptions {
  readonly mode: FaultMode
  readonly fromStep?: number
  readonly honestSteps?: number
  readonly lieRate?: number
  readonly phase?: FaultPhase
  /**
   * The calibration input, to recognise it: a first stage's tokens (calibrationTokens(config)),
   * a later stage's input hidden state (the boundary state, referenceBoundaries). Needed for
   * phase 'calibration'.
   */
  readonly calibration?: { readonly tokens?: readonly number[]; readonly hidden?: Float32Array }
  readonly noise?: number
  readonly seed?: number
  readonly other?: StageSession
  readonly delayMs?: number
}

/** A calibration hidden input forwarded by an honest upstream stage lies this close to the truth. */
const CALIBRATION_MATCH = 0.05

interface GenState {
  steps: number
  last: StageStepOutput | undefined
  /** Positions [0, lastEnd) were held once `last` was computed. */
  lastEnd: number
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new FaultOptionsError(`FaultyStage: ${what}`)
}

export class FaultyStage extends ShapedStage implements StageSession {
  /** Every step asked of this replica, in order, and whether it lied on it. */
  readonly calls: Array<{ generationId: string; startPos: number; seqLen: number; lied: boolean }> = []
  /** Every truncate asked of this replica, in order. */
  readonly truncations: Array<{ generationId: string; length: number }> = []
  private readonly gens = new Map<string, GenState>()
  private readonly rng: Xoshiro128ss
  private readonly rateRng: Xoshiro128ss
  private served = 0

  constructor(
    private readonly inner: StageSession,
    readonly options: FaultOptions,
  ) {
    super(inner)
    const { honestSteps, lieRate, phase, calibration } = options
    check(honestSteps === undefined || (Number.isInteger(honestSteps) && honestSteps >= 0), 'bad honestSteps')
    check(lieRate === undefined || (lieRate >= 0 && lieRate <= 1), 'lieRate must be in [0, 1]')
    check(phase === undefined || ['prefill', 'decode', 'calibration', 'all'].includes(phase), 'bad phase')
    check(
      phase !== 'calibration' || (inner.isFirst ? calibration?.tokens : calibration?.hidden) !== undefined,
      `phase 'calibration' needs the calibration ${inner.isFirst ? 'tokens' : 'hidden input'}`,
    )
    this.rng = new Xoshiro128ss(options.seed ?? 1)
    this.rateRng = new Xoshiro128ss(((options.seed ?? 1) ^ 0x5bd1e995) >>> 0)
  }

  get activeGenerations(): number {
    return this.gens.size
  }

  /** Which phase a step belongs to. */
  phaseOf(input: StageStepInput): Exclude<FaultPhase, 'all'> {
    if (this.isCalibration(input)) return 'calibration'
    return input.startPos === 0 && input.seqLen > 1 ? 'prefill' : 'decode'
  }

  async step(generationId: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    const g = this.gens.get(generationId) ?? { steps: 0, last: undefined, lastEnd: 0 }
    this.gens.set(generationId, g)
    const o = this.options
    const phase = o.phase ?? 'all'
    const inGeneration = g.steps++ >= (o.fromStep ?? 0)
    const trusted = this.served++ >= (o.honestSteps ?? 0)
    const patient = inGeneration && trusted && (phase === 'all' || this.phaseOf(input) === phase)
    // Drawn only where it would lie, so the rate counts the steps it could lie on. A merged
    // replay of n decode positions stands for n steps: it lies if any of them would have.
    const positions = this.phaseOf(input) === 'decode' ? input.seqLen : 1
    const rate = o.lieRate === undefined ? 1 : 1 - (1 - o.lieRate) ** positions
    const faulty = patient && (o.lieRate === undefined || this.rateRng.nextFloat64() < rate)
    const mode = faulty ? o.mode : 'honest'
    this.calls.push({ generationId, startPos: input.startPos, seqLen: input.seqLen, lied: mode !== 'honest' })
    if (mode === 'gone') throw new StageError('ERR_STAGE_GONE', 'replica was killed')
    if (mode === 'silent') {
      return new Promise<never>((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason)))
    }
    const other = o.other
    const [out, alt] = await Promise.all([
      this.inner.step(generationId, input, signal),
      other?.step(generationId, input, signal),
    ])
    const previous = g.last
    g.last = out
    g.lastEnd = input.startPos + input.seqLen
    const next = () => this.rng.nextFloat64()
    const lie = this.lie(mode, out, previous, alt, input, next)
    if (mode === 'late') await new Promise((resolve) => setTimeout(resolve, o.delayMs ?? 1000))
    return lie
  }

  /**
   * The answer for `mode`. A last stage asked for every row (a window replay: allRows) lies in
   * every row's candidates as it lies in the last one's, so the lie shows in its token rows too.
   */
  private lie(
    mode: FaultMode,
    out: StageStepOutput,
    previous: StageStepOutput | undefined,
    alt: StageStepOutput | undefined,
    input: StageStepInput,
    next: () => number,
  ): StageStepOutput {
    const o = this.options
    const noise = o.noise ?? 0.01
    if (out.hidden !== undefined) {
      switch (mode) {
        case 'noise':
          return { hidden: noisy(out.hidden, noise, next) }
        case 'collude':
          return { hidden: colludingHidden(out.hidden, input.seqLen, input.startPos, noise, o.seed ?? 1) }
        case 'zero':
          return { hidden: new Float32Array(out.hidden.length) }
        case 'stale': {
          // Each row answers with the row before it (the first with the previous step's last row).
          const h = out.hidden.length / input.seqLen
          const prev = previous?.hidden
          if (input.seqLen === 1 || prev === undefined) return previous ?? out
          const shifted = new Float32Array(out.hidden.length)
          shifted.set(prev.subarray(prev.length - h), 0)
          shifted.set(out.hidden.subarray(0, out.hidden.length - h), h)
          return { hidden: shifted }
        }
        case 'other-layer':
          return input.hidden !== undefined && !this.isLast ? { hidden: input.hidden } : (alt ?? out)
        default:
          return out
      }
    }
    const topk = out.topk as TopKLogits
    const rows = out.rowTopk === undefined ? undefined : splitRows(out.rowTopk)
    const each = (f: (t: TopKLogits) => TopKLogits): StageStepOutput => {
      const lied = rows?.map(f)
      return lied === undefined
        ? { topk: f(topk) }
        : { topk: lied[lied.length - 1] as TopKLogits, rowTopk: joinRows(lied) }
    }
    switch (mode) {
      case 'noise':
        return each((t) => noisyTopK(t, noise, next))
      case 'collude':
        return each(colludingTopK)
      case 'zero':
        return each((t) => zeroTopK(Math.max(2, t.values.length)))
      case 'stale': {
        // Each row answers with the candidates of the row before it (the first with the last step's).
        if (rows === undefined) return previous ?? out
        const before = previous?.topk ?? (rows[0] as TopKLogits)
        const shifted = [before, ...rows.slice(0, -1)]
        return { topk: shifted[shifted.length - 1] as TopKLogits, rowTopk: joinRows(shifted) }
      }
      case 'other-layer':
        return alt ?? out
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

  private isCalibration(input: StageStepInput): boolean {
    const cal = this.options.calibration
    if (cal === undefined || input.startPos !== 0) return false
    if (input.tokens !== undefined) {
      const t = cal.tokens
      return t !== undefined && t.length === input.tokens.length && t.every((x, i) => x === input.tokens?.[i])
    }
    const h = cal.hidden
    if (h === undefined || input.hidden === undefined || h.length !== input.hidden.length) return false
    const dev = relativeDeviation(input.hidden, h, h.length / input.seqLen)
    return dev <= CALIBRATION_MATCH
  }
}
