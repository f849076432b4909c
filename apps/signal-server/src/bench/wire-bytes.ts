import {
  encodeFingerprint,
  encodeMessage,
  fingerprintHidden,
  type HiddenDtype,
  type Message,
  roundToFp16,
} from '@butterfly/core'

export interface DecodeWireBytes {
  /** One replica: request + signed full result. */
  readonly r1: number
  /** Three replicas, each sending its full state. */
  readonly r3full: number
  /** Three replicas: one full state, two fingerprints. */
  readonly r3fp: number
  readonly fullResult: number
  readonly fpResult: number
}

/**
 * Bytes of one decode step at one middle stage, as encoded on the wire (framing included, results
 * signed), for hidden states of `hidden` values in `dtype`.
 */
export function decodeWireBytes(hidden: number, dtype: HiddenDtype): DecodeWireBytes {
  const fp16 = dtype === 'fp16'
  const state = roundToFp16(Float32Array.from({ length: hidden }, (_, i) => Math.sin(i)))
  const tag = fp16 ? { hiddenDtype: 'fp16' as const } : {}
  const common = { generationId: 'g0123456789abcdef', stepIndex: 1 }
  const request = (fingerprint: boolean) =>
    size({
      type: 'StepRequest',
      ...common,
      startPos: 1,
      seqLen: 1,
      temperature: 0,
      deadlineMs: 60_000,
      hidden: state,
      ...tag,
      ...(fingerprint ? { fingerprintChallenge: 7 } : {}),
    })
  const signature = new Uint8Array(64)
  const fullResult = size({ type: 'StepResult', ...common, hidden: state, ...tag, signature })
  const fingerprint = encodeFingerprint(fingerprintHidden(state, 1, hidden))
  // A fingerprint is the same size whatever the wire dtype: it summarises, it does not carry.
  const fpResult = size({ type: 'StepResult', ...common, fingerprint, signature })
  const r1 = request(false) + fullResult
  return { r1, r3full: 3 * r1, r3fp: r1 + 2 * (request(true) + fpResult), fullResult, fpResult }
}

/** The bench's line for one dtype. */
export function wireBytesLine(hidden: number, dtype: HiddenDtype): string {
  const b = decodeWireBytes(hidden, dtype)
  return (
    `   wire bytes per decode token per middle stage (${dtype}): r=1 ${b.r1} B; r=3 full states ${b.r3full} B; ` +
    `r=3 one full state + two fingerprints ${b.r3fp} B (${((1 - b.r3fp / b.r3full) * 100).toFixed(0)}% less; ` +
    `results alone ${b.fullResult + 2 * b.fpResult} B vs ${3 * b.fullResult} B)`
  )
}

/**
 * Bytes of the last stage's signed answer to one decode step with k candidates: what comes back
 * to the coordinator per token. A greedy draw asks for one (StageStepInput.candidates); sampling
 * with top_k for k; log-probabilities, penalties and biases for every candidate the stage has.
 */
export function lastStageAnswerBytes(k: number): number {
  const values = Float32Array.from({ length: k }, (_, i) => 10 - i)
  const ids = Int32Array.from({ length: k }, (_, i) => i)
  const msg: Message = {
    type: 'StepResult',
    generationId: 'g0123456789abcdef',
    stepIndex: 1,
    topk: { values, ids, logSumExp: 12.5 },
    signature: new Uint8Array(64),
  }
  return size(msg)
}

/** A message's bytes on the wire, frame headers included. */
function size(msg: Message): number {
  return encodeMessage(msg).reduce((n, f) => n + f.byteLength, 0)
}

/** The bench's line for the last stage's answers at the stage's top-k (64) and fewer. */
export function lastStageBytesLine(stageTopK = 64): string {
  const all = lastStageAnswerBytes(stageTopK)
  const sizes = [1, 5, 20].map((k) => `${k} candidates ${lastStageAnswerBytes(k)} B`)
  return `   wire bytes of the last stage's answer per decode token: all ${stageTopK} candidates ${all} B; ${sizes.join('; ')} (greedy asks for 1: ${((1 - lastStageAnswerBytes(1) / all) * 100).toFixed(0)}% less)`
}
