import { BodyReader, type BodyWriter, payloadError } from './body.js'
import { FrameType, REQUEST_FLAGS, STEP_FLAGS } from './frame.js'
import {
  MAX_POSITIONS,
  MAX_SEQ_LEN,
  STEP_SIGNATURE_BYTES,
  type StepRequest,
  type StepResult,
  validateMessage,
} from './validate-message.js'

/**
 * Batches on the wire. A stage that runs the steps of many generations as one batch answers them
 * in one StepResults message signed once, and a coordinator that has steps of many generations for
 * the same peer in one tick sends one StepRequests message: one data-channel send, one signature
 * and one verification per batch instead of per generation. Inner messages are the single
 * messages' bodies, byte for byte:
 *
 *   StepRequests   u32 count, count x (u32 flags, u32 length, StepRequest body, pad to 4)
 *   StepResults    u32 count, u32 signed (0 or 1), [u8[64] signature],
 *                  count x (u32 startPos, u32 seqLen, u32 flags, u32 length, StepResult body, pad to 4)
 *
 * A StepResults item names the step's startPos and seqLen, because the signature covers them (see
 * identity/step-signature.ts, signResults); its own StepResult carries no signature.
 */

/** Most steps one batch message carries. */
export const MAX_BATCH_STEPS = 1024

export interface StepRequests {
  readonly type: 'StepRequests'
  requests: StepRequest[]
}

export interface StepResultItem {
  startPos: number
  seqLen: number
  /** Unsigned: the batch's signature covers it. */
  result: StepResult
}

export interface StepResults {
  readonly type: 'StepResults'
  results: StepResultItem[]
  /** The answering peer's one signature over every item (signResults). */
  signature?: Uint8Array
}

export type StepBatch = StepRequests | StepResults

/** Checks a batch as validateMessage checks single messages (each inner one by it). */
export function validateBatch(msg: StepBatch): StepBatch {
  const items = msg.type === 'StepRequests' ? msg.requests : msg.results
  if (!Array.isArray(items) || items.length < 1 || items.length > MAX_BATCH_STEPS) {
    throw payloadError(`${msg.type} must carry 1 to ${MAX_BATCH_STEPS} steps`)
  }
  if (msg.type === 'StepRequests') {
    for (const r of msg.requests) {
      if (validateMessage(r).type !== 'StepRequest')
        throw payloadError('StepRequests carries only StepRequests')
    }
    return msg
  }
  if (msg.signature !== undefined) {
    if (!(msg.signature instanceof Uint8Array && msg.signature.length === STEP_SIGNATURE_BYTES)) {
      throw payloadError(`StepResults.signature must be ${STEP_SIGNATURE_BYTES} bytes`)
    }
  }
  for (const item of msg.results) {
    if (typeof item !== 'object' || item === null) throw payloadError('StepResults items must be objects')
    const { startPos, seqLen, result } = item
    if (!(Number.isInteger(startPos) && startPos >= 0 && Number.isInteger(seqLen) && seqLen >= 1)) {
      throw payloadError('StepResults item needs a startPos >= 0 and a seqLen >= 1')
    }
    if (seqLen > MAX_SEQ_LEN || startPos + seqLen > MAX_POSITIONS) {
      throw payloadError(`StepResults item of ${seqLen} positions at ${startPos} is out of range`)
    }
    if (validateMessage(result).type !== 'StepResult')
      throw payloadError('StepResults carries only StepResults')
    if (result.signature !== undefined)
      throw payloadError('a StepResults item is signed by the batch, not alone')
  }
  return msg
}

/** How messages.ts encodes and decodes one inner body (passed in: that module imports this one). */
export interface InnerCodec {
  encode(msg: StepRequest | StepResult): { flags: number; body: BodyWriter }
  decode(type: FrameType, body: Uint8Array, flags: number): unknown
}

export function writeBatch(w: BodyWriter, msg: StepBatch, codec: InnerCodec): void {
  const items = msg.type === 'StepRequests' ? msg.requests : msg.results
  w.u32(items.length)
  if (msg.type === 'StepResults') {
    w.u32(msg.signature === undefined ? 0 : 1)
    if (msg.signature !== undefined) w.bytes(msg.signature)
  }
  for (const item of items) {
    const inner = 'result' in item ? item.result : item
    if ('result' in item) w.u32(item.startPos).u32(item.seqLen)
    const { flags, body } = codec.encode(inner)
    w.u32(flags).u32(body.length)
    w.append(body).align4()
  }
}

export function readBatch(type: FrameType, body: Uint8Array, codec: InnerCodec): StepBatch {
  const r = new BodyReader(body)
  const count = r.u32()
  if (count < 1 || count > MAX_BATCH_STEPS) throw payloadError(`a batch of ${count} steps`)
  const results = type === FrameType.StepResults
  let signature: Uint8Array | undefined
  if (results) {
    const signed = r.u32()
    if (signed > 1) throw payloadError(`StepResults signed marker ${signed} is not 0 or 1`)
    if (signed === 1) signature = r.bytes(STEP_SIGNATURE_BYTES)
  }
  const innerType = results ? FrameType.StepResult : FrameType.StepRequest
  const requests: StepRequest[] = []
  const items: StepResultItem[] = []
  for (let i = 0; i < count; i++) {
    const startPos = results ? r.u32() : 0
    const seqLen = results ? r.u32() : 0
    const flags = r.u32()
    if ((flags & ~(results ? STEP_FLAGS : REQUEST_FLAGS)) !== 0)
      throw payloadError(`inner flags 0x${flags.toString(16)}`)
    const inner = codec.decode(innerType, r.bytes(r.u32()), flags)
    r.align4()
    if (results) items.push({ startPos, seqLen, result: inner as StepResult })
    else requests.push(inner as StepRequest)
  }
  r.end()
  const msg: StepBatch = results
    ? { type: 'StepResults', results: items, ...(signature !== undefined ? { signature } : {}) }
    : { type: 'StepRequests', requests }
  return validateBatch(msg)
}
