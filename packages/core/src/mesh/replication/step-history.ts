import type { StageStepInput, StageStepOutput, StepProvenance } from '../../engine/inference-backend.js'

/**
 * One accepted step of a generation at a replicated stage: its input (what a replica that falls
 * behind replays), the output the stage returned, and whether f + 1 peers have confirmed it yet.
 * A step a trusted leader ran ahead alone keeps that leader until a window check confirms it.
 */
export interface StepRecord<L = unknown> {
  input: StageStepInput
  out: StageStepOutput
  /** Run ahead by this leader alone and not yet confirmed; undefined once confirmed. */
  leader: L | undefined
  /** Peers whose answers agreed on it (empty while unconfirmed). */
  confirmedBy: readonly string[]
  /** Peers asked for it, and who disagreed (votes), for per-token provenance. */
  asked: readonly string[]
  disagreeing: readonly string[]
  /** 'vote': confirmed when it ran; 'window': run ahead, confirmed afterwards. */
  how: 'vote' | 'window'
}

/** Positions the records cover. */
export function endOf(steps: readonly StepRecord[]): number {
  const last = steps[steps.length - 1]
  return last === undefined ? 0 : last.input.startPos + last.input.seqLen
}

/** Positions of the leading run of confirmed records. */
export function confirmedEnd(steps: readonly StepRecord[]): number {
  let end = 0
  for (const s of steps) {
    if (s.leader !== undefined) break
    end = s.input.startPos + s.input.seqLen
  }
  return end
}

/** Rows [from, to) of a step's input, in absolute positions (which must lie inside the step). */
export function sliceInput(input: StageStepInput, from: number, to: number): StageStepInput {
  const { startPos, seqLen } = input
  if (from === startPos && to === startPos + seqLen) return input
  const a = from - startPos
  const b = to - startPos
  if (input.tokens !== undefined) {
    return { ...input, tokens: input.tokens.slice(a, b), seqLen: b - a, startPos: from }
  }
  const hidden = input.hidden as Float32Array
  const width = hidden.length / seqLen
  return { ...input, hidden: hidden.slice(a * width, b * width), seqLen: b - a, startPos: from }
}

/** The inputs covering positions [from, to), cut where a step straddles either end. */
export function inputsBetween(steps: readonly StepRecord[], from: number, to: number): StageStepInput[] {
  const out: StageStepInput[] = []
  for (const { input } of steps) {
    const a = Math.max(from, input.startPos)
    const b = Math.min(to, input.startPos + input.seqLen)
    if (a < b) out.push(sliceInput(input, a, b))
  }
  return out
}

/**
 * Drops everything from position `length` on, in place. A step cut in two keeps its first rows;
 * its output is dropped with the rest, since nothing downstream may use it any more.
 */
export function truncateSteps(steps: StepRecord[], length: number): void {
  while (steps.length > 0 && (steps[steps.length - 1] as StepRecord).input.startPos >= length) steps.pop()
  const last = steps[steps.length - 1]
  if (last !== undefined && endOf(steps) > length) {
    last.input = sliceInput(last.input, last.input.startPos, length)
    last.out = {}
  }
}

/** What generate() attaches to a token for one stage: who computed and who confirmed the step. */
export function provenanceOf(step: StepRecord): StepProvenance {
  return {
    peers: step.asked,
    agreeing: step.confirmedBy,
    disagreeing: step.disagreeing,
    spotChecked: false,
    confirmed: step.leader === undefined,
    verification: step.how,
  }
}
