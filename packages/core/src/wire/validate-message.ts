import type { TopKLogits } from '../base/top-k-logits.js'
import type { WireError } from '../errors.js'
import { payloadError } from './body.js'
import { checkFp16Values, checkHiddenDtype, type HiddenDtype } from './hidden-dtype.js'
import { checkRoute } from './step-route.js'
import { checkError } from './wire-error.js'

export { MAX_ERROR_MESSAGE_BYTES, MAX_ERROR_NAME_LENGTH, toWireError } from './wire-error.js'

/**
 * The mesh messages and the field-by-field rules both sides apply: a sender validates before
 * encoding so its own bugs surface locally, a receiver after decoding because peers are hostile.
 */

export const MAX_GENERATION_ID_LENGTH = 64
/** Positions in one step (a prefill chunk). */
export const MAX_SEQ_LEN = 1 << 17
/** startPos + seqLen: far beyond any model's context, small enough to stay exact everywhere. */
export const MAX_POSITIONS = 1 << 24
export const MAX_HIDDEN_SIZE = 1 << 16
export const MAX_TOPK = 1 << 16
export const MAX_TEMPERATURE = 100
/** An Ed25519 signature. */
export const STEP_SIGNATURE_BYTES = 64
/**
 * The largest fingerprint a StepResult carries, computed from the hidden-state fingerprint's
 * encoding (verify/fingerprint-codec.ts, a layer above): a 20-byte header and up to 512 rows (one
 * per position of the longest replayed window) of 8 + 6k + 4m bytes at the largest k = 64 and
 * sketch m = 16. The last stage's token rows (verify/token-rows.ts) are far smaller.
 */
export const MAX_FINGERPRINT_BYTES = 20 + 512 * (8 + 6 * 64 + 4 * 16)

export interface StepRequest {
  readonly type: 'StepRequest'
  generationId: string
  stepIndex: number
  startPos: number
  seqLen: number
  /** Sent as f32. */
  temperature: number
  /** Relative budget in milliseconds (peers' clocks differ); 0 means none. */
  deadlineMs: number
  /** First stage: exactly seqLen token ids. */
  tokens?: Int32Array
  /** Other stages: seqLen * hiddenSize finite values. Exactly one of tokens and hidden is set. */
  hidden?: Float32Array
  /** Of `hidden`, and the dtype the answer's hidden state must use; absent means fp32. */
  hiddenDtype?: HiddenDtype
  /**
   * u32. When set (stages that output hidden states), the peer answers with a fingerprint of its output
   * under this challenge instead of the output itself, and keeps the output for a FetchHidden.
   */
  fingerprintChallenge?: number
  /** A chained step (wire/step-route.ts): the peers to forward the output to, then who to answer. */
  route?: string[]
  replyTo?: string
  /**
   * 1..MAX_TOPK. The last stage answers with at most this many of its candidates (the
   * coordinator's draw needs no more: one for a greedy token without penalties or log-probs);
   * earlier stages of a chain pass it on.
   */
  candidates?: number
}

export interface StepResult {
  readonly type: 'StepResult'
  generationId: string
  stepIndex: number
  /** Every stage but the last. At most one of hidden and topk is set, and one unless a fingerprint is. */
  hidden?: Float32Array
  /** Of `hidden` (only with it); absent means fp32. */
  hiddenDtype?: HiddenDtype
  topk?: TopKLogits
  /**
   * The answering peer's Ed25519 signature over the step and its output (hidden or topk, plus
   * the fingerprint): see identity/step-signature.ts. Exactly STEP_SIGNATURE_BYTES bytes.
   */
  signature?: Uint8Array
  /** Opaque summary of the output for cross-checking peers; 1..MAX_FINGERPRINT_BYTES bytes. */
  fingerprint?: Uint8Array
}

export interface StepError {
  readonly type: 'StepError'
  generationId: string
  stepIndex: number
  /** Use toWireError to turn any thrown value into one that passes validation. */
  error: WireError
}

/**
 * Asks for the full hidden state of a step the peer answered with a fingerprint; the answer is a
 * StepResult for the same step carrying it (signed like any result), or a StepError.
 */
export interface FetchHidden {
  readonly type: 'FetchHidden'
  generationId: string
  stepIndex: number
}

export interface EndGeneration {
  readonly type: 'EndGeneration'
  generationId: string
}

/**
 * Rolls the sender's generation back to its first `length` positions (KV rows at positions >=
 * length are dropped; the next StepRequest starts at length). No reply; only the connection that
 * owns the generation may send it, after the replies to its earlier steps.
 */
export interface Truncate {
  readonly type: 'Truncate'
  generationId: string
  /** u32. */
  length: number
}

export interface Ping {
  readonly type: 'Ping'
  nonce: number
  sentAt: number
}

export interface Pong {
  readonly type: 'Pong'
  nonce: number
  sentAt: number
}

export type Message =
  | StepRequest
  | StepResult
  | StepError
  | EndGeneration
  | FetchHidden
  | Truncate
  | Ping
  | Pong

const GENERATION_ID = /^[A-Za-z0-9_-]{1,64}$/

export function validateMessage(msg: unknown): Message {
  if (typeof msg !== 'object' || msg === null) throw payloadError('message must be an object')
  const m = msg as Record<string, unknown>
  switch (m.type) {
    case 'StepRequest':
      return validateStepRequest(m)
    case 'StepResult':
      return validateStepResult(m)
    case 'StepError': {
      checkGenerationId(m)
      checkU32(m, 'stepIndex')
      checkError(m.error)
      return msg as StepError
    }
    case 'EndGeneration':
      checkGenerationId(m)
      return msg as EndGeneration
    case 'FetchHidden':
      checkGenerationId(m)
      checkU32(m, 'stepIndex')
      return msg as FetchHidden
    case 'Truncate':
      checkGenerationId(m)
      checkU32(m, 'length')
      return msg as Truncate
    case 'Ping':
    case 'Pong':
      checkU32(m, 'nonce')
      if (!(typeof m.sentAt === 'number' && Number.isFinite(m.sentAt) && m.sentAt >= 0)) {
        throw payloadError(`${m.type}.sentAt must be a finite number >= 0, got ${String(m.sentAt)}`)
      }
      return msg as Ping | Pong
    default:
      throw payloadError(`unknown message type ${JSON.stringify(String(m.type)).slice(0, 80)}`)
  }
}

function validateStepRequest(m: Record<string, unknown>): StepRequest {
  checkGenerationId(m)
  checkU32(m, 'stepIndex')
  const startPos = checkU32(m, 'startPos')
  const seqLen = checkU32(m, 'seqLen')
  checkU32(m, 'deadlineMs')
  if (seqLen < 1 || seqLen > MAX_SEQ_LEN)
    throw payloadError(`StepRequest.seqLen must be in [1, ${MAX_SEQ_LEN}], got ${seqLen}`)
  if (startPos + seqLen > MAX_POSITIONS) {
    throw payloadError(
      `StepRequest.startPos + seqLen must be at most ${MAX_POSITIONS}, got ${startPos + seqLen}`,
    )
  }
  const t = m.temperature
  if (!(typeof t === 'number' && Number.isFinite(t) && t >= 0 && t <= MAX_TEMPERATURE)) {
    throw payloadError(`StepRequest.temperature must be in [0, ${MAX_TEMPERATURE}], got ${String(t)}`)
  }
  const { tokens, hidden } = m
  if (m.fingerprintChallenge !== undefined) checkU32(m, 'fingerprintChallenge')
  if (m.candidates !== undefined) {
    const k = checkU32(m, 'candidates')
    if (k < 1 || k > MAX_TOPK)
      throw payloadError(`StepRequest.candidates must be in [1, ${MAX_TOPK}], got ${k}`)
  }
  checkRoute(m)
  if ((tokens === undefined) === (hidden === undefined)) {
    throw payloadError('StepRequest needs exactly one of tokens (first stage) and hidden')
  }
  if (tokens !== undefined) {
    if (!(tokens instanceof Int32Array)) throw payloadError('StepRequest.tokens must be an Int32Array')
    if (tokens.length !== seqLen) {
      throw payloadError(`StepRequest has ${tokens.length} tokens but seqLen ${seqLen}`)
    }
    for (let i = 0; i < tokens.length; i++) {
      if ((tokens[i] as number) < 0) throw payloadError(`StepRequest.tokens[${i}] is negative (${tokens[i]})`)
    }
  }
  const dtype = checkHiddenDtype(m.hiddenDtype, 'StepRequest.hiddenDtype')
  if (hidden !== undefined) {
    checkFinite(hidden, 'StepRequest.hidden')
    if (dtype === 'fp16') checkFp16Values(hidden, 'StepRequest.hidden')
    const hiddenSize = hidden.length / seqLen
    if (!Number.isInteger(hiddenSize) || hiddenSize > MAX_HIDDEN_SIZE) {
      throw payloadError(
        `StepRequest.hidden has ${hidden.length} values, not seqLen ${seqLen} times a hidden size <= ${MAX_HIDDEN_SIZE}`,
      )
    }
  }
  return m as unknown as StepRequest
}

function validateStepResult(m: Record<string, unknown>): StepResult {
  checkGenerationId(m)
  checkU32(m, 'stepIndex')
  const { hidden, topk } = m
  // A fingerprinted step answers with the fingerprint alone; every other result carries its output.
  if (hidden !== undefined && topk !== undefined) throw payloadError('StepResult has both hidden and topk')
  if (hidden === undefined && topk === undefined && m.fingerprint === undefined) {
    throw payloadError('StepResult needs one of hidden, topk and fingerprint')
  }
  const dtype = checkHiddenDtype(m.hiddenDtype, 'StepResult.hiddenDtype')
  if (dtype === 'fp16' && hidden === undefined) throw payloadError('StepResult has an fp16 tag but no hidden')
  if (hidden !== undefined) checkFinite(hidden, 'StepResult.hidden')
  if (hidden !== undefined && dtype === 'fp16') checkFp16Values(hidden, 'StepResult.hidden')
  const { signature, fingerprint } = m
  if (
    signature !== undefined &&
    !(signature instanceof Uint8Array && signature.length === STEP_SIGNATURE_BYTES)
  ) {
    throw payloadError(`StepResult.signature must be a Uint8Array of ${STEP_SIGNATURE_BYTES} bytes`)
  }
  if (
    fingerprint !== undefined &&
    !(
      fingerprint instanceof Uint8Array &&
      fingerprint.length >= 1 &&
      fingerprint.length <= MAX_FINGERPRINT_BYTES
    )
  ) {
    throw payloadError(`StepResult.fingerprint must be a Uint8Array of 1..${MAX_FINGERPRINT_BYTES} bytes`)
  }
  if (topk !== undefined) {
    if (typeof topk !== 'object' || topk === null) throw payloadError('StepResult.topk must be an object')
    const { values, ids, logSumExp } = topk as Record<string, unknown>
    if (!(values instanceof Float32Array) || !(ids instanceof Int32Array)) {
      throw payloadError('StepResult.topk needs Float32Array values and Int32Array ids')
    }
    const n = values.length
    if (n === 0 || n > MAX_TOPK || ids.length !== n) {
      throw payloadError(
        `StepResult.topk needs 1..${MAX_TOPK} values and as many ids (got ${n} and ${ids.length})`,
      )
    }
    if (!(typeof logSumExp === 'number' && Number.isFinite(logSumExp))) {
      throw payloadError(`StepResult.topk.logSumExp must be finite, got ${String(logSumExp)}`)
    }
    for (let i = 0; i < n; i++) {
      const v = values[i] as number
      // -Infinity is a legitimate (masked) logit; NaN and +Infinity are not.
      if (Number.isNaN(v) || v === Number.POSITIVE_INFINITY)
        throw payloadError(`StepResult.topk.values[${i}] is ${v}`)
      if (i > 0 && v > (values[i - 1] as number))
        throw payloadError('StepResult.topk.values are not sorted descending')
      if ((ids[i] as number) < 0) throw payloadError(`StepResult.topk.ids[${i}] is negative (${ids[i]})`)
    }
  }
  return m as unknown as StepResult
}

function checkGenerationId(m: Record<string, unknown>): void {
  const id = m.generationId
  if (!(typeof id === 'string' && GENERATION_ID.test(id))) {
    const shown =
      typeof id === 'string' ? JSON.stringify(id.slice(0, MAX_GENERATION_ID_LENGTH + 1)) : typeof id
    throw payloadError(`${String(m.type)}.generationId must be 1..64 chars of [A-Za-z0-9_-], got ${shown}`)
  }
}

function checkU32(m: Record<string, unknown>, field: string): number {
  const v = m[field]
  if (!(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff)) {
    throw payloadError(`${String(m.type)}.${field} must be a u32, got ${String(v)}`)
  }
  return v
}

function checkFinite(values: unknown, field: string): asserts values is Float32Array {
  if (!(values instanceof Float32Array)) throw payloadError(`${field} must be a Float32Array`)
  if (values.length === 0) throw payloadError(`${field} is empty`)
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i] as number)) throw payloadError(`${field}[${i}] is ${values[i]}`)
  }
}
