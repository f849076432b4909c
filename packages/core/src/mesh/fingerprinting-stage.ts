import {
  checkTruncateLength,
  type StageSession,
  type StageStepInput,
  type StageStepOutput,
} from '../engine/inference-backend.js'
import { ShapedStage } from '../engine/stage-shape.js'
import { StageError } from '../errors.js'
import { fingerprintHidden } from '../verify/fingerprint.js'
import { MAX_TOKEN_ROWS, tokenRowsOf } from '../verify/token-rows.js'
import { type HiddenDtype, roundToFp16 } from '../wire/hidden-dtype.js'

interface Kept {
  readonly startPos: number
  readonly seqLen: number
  readonly hidden: Float32Array
}

/**
 * Gives any stage the replica side of fingerprint voting: a step that asks for a fingerprint is
 * run as usual, answered with the fingerprint of its hidden output, and the output is kept, one
 * per generation, until the coordinator fetches it (when the vote needs a second full state), the
 * next step of that generation replaces it, or the generation ends. The last stage has no hidden
 * output: asked for a fingerprint, it runs the step with allRows and answers with token rows (the
 * top-2 candidates of every position) and keeps nothing, so FetchHidden is unsupported there. The
 * stage host wraps its stage in one; in-process replicas (tests, benches) are wrapped directly.
 *
 * With `hiddenDtype` fp16 (the request's wire dtype) the hidden output is rounded to fp16 before
 * anything else sees it: the coordinator compares fingerprints with the full states it fetches or
 * receives, which crossed the wire as fp16, so the fingerprint must be of those same values.
 */
export class FingerprintingStage extends ShapedStage implements StageSession {
  private readonly kept = new Map<string, Kept>()

  constructor(private readonly inner: StageSession) {
    super(inner)
  }

  get activeGenerations(): number {
    return this.inner.activeGenerations
  }

  async step(
    generationId: string,
    input: StageStepInput,
    signal?: AbortSignal,
    hiddenDtype?: HiddenDtype,
  ): Promise<StageStepOutput> {
    // Fingerprint answers carry their own candidates (token rows): the caller's limit is not theirs.
    const { fingerprint, candidates: _limit, ...unlimited } = input
    const plain: StageStepInput = fingerprint === undefined ? input : unlimited
    const fp16 = hiddenDtype === 'fp16'
    // Whatever was kept belongs to an earlier step, which can no longer be voted on.
    this.kept.delete(generationId)
    if (fingerprint === undefined) {
      const out = await this.inner.step(generationId, plain, signal)
      return fp16 && out.hidden !== undefined ? { ...out, hidden: roundToFp16(out.hidden) } : out
    }
    if (this.isLast) {
      if (input.seqLen > MAX_TOKEN_ROWS) {
        throw new StageError(
          'ERR_STAGE_REPLY',
          `the last stage answers fingerprints of at most ${MAX_TOKEN_ROWS} positions, not ${input.seqLen}`,
        )
      }
      const out = await this.inner.step(generationId, { ...plain, allRows: true }, signal)
      // A one-position step's candidates are its top-k (stages need not repeat them as rows).
      const t = out.topk
      const rows =
        out.rowTopk ??
        (input.seqLen === 1 && t !== undefined
          ? {
              rows: 1,
              k: t.values.length,
              values: t.values,
              ids: t.ids,
              logSumExp: Float32Array.of(t.logSumExp),
            }
          : undefined)
      if (rows?.rows !== input.seqLen) {
        throw new StageError(
          'ERR_STAGE_REPLY',
          `the last stage produced candidates for ${rows?.rows ?? 0} of the step's ${input.seqLen} positions`,
        )
      }
      return { tokenRows: tokenRowsOf(rows) }
    }
    const out = await this.inner.step(generationId, plain, signal)
    if (!(out.hidden instanceof Float32Array) || out.hidden.length % input.seqLen !== 0) {
      throw new StageError('ERR_STAGE_REPLY', 'the stage produced no hidden state to fingerprint')
    }
    const hidden = fp16 ? roundToFp16(out.hidden) : out.hidden
    const fp = fingerprintHidden(hidden, input.seqLen, hidden.length / input.seqLen, undefined, {
      challenge: fingerprint.challenge,
    })
    this.kept.set(generationId, { startPos: input.startPos, seqLen: input.seqLen, hidden })
    return { fingerprint: fp }
  }

  /** The kept output of the step at `startPos`, with its length in positions. */
  keptStep(generationId: string, startPos: number): { hidden: Float32Array; seqLen: number } {
    const k = this.kept.get(generationId)
    if (this.isLast) {
      throw new StageError(
        'ERR_HIDDEN_UNAVAILABLE',
        'the last stage has no hidden output to fetch: it answers fingerprints with token rows',
      )
    }
    if (k === undefined || k.startPos !== startPos) {
      throw new StageError(
        'ERR_HIDDEN_UNAVAILABLE',
        `no kept output for generation ${generationId} at position ${startPos}`,
      )
    }
    return { hidden: k.hidden, seqLen: k.seqLen }
  }

  async fetchHidden(generationId: string, startPos: number): Promise<Float32Array> {
    return this.keptStep(generationId, startPos).hidden
  }

  /** Drops the kept output when it starts at or after `length` (it no longer exists), then rolls back. */
  async truncate(generationId: string, length: number, signal?: AbortSignal): Promise<void> {
    checkTruncateLength(generationId, length)
    const k = this.kept.get(generationId)
    if (k !== undefined && k.startPos >= length) this.kept.delete(generationId)
    await this.inner.truncate(generationId, length, signal)
  }

  endGeneration(generationId: string): void {
    this.kept.delete(generationId)
    this.inner.endGeneration(generationId)
  }

  async dispose(): Promise<void> {
    this.kept.clear()
    await this.inner.dispose()
  }
}
