import { type ButterflyError, errorFromWire, WireProtocolError } from '../errors.js'
import { BodyReader, BodyWriter, payloadError, utf8Bytes } from './body.js'
import {
  EXT_FINGERPRINT,
  EXT_SIGNATURE,
  readExtensions,
  readId,
  readTag,
  writeHidden,
  writeId,
  writeTag,
} from './body-fields.js'
import {
  checkMessageId,
  FRAME_HEADER_BYTES,
  FrameFlag,
  FrameType,
  MAX_CHUNK_BYTES,
  MAX_CHUNK_PAYLOAD_BYTES,
  MAX_MESSAGE_BYTES,
  REQUEST_FLAGS,
  STEP_FLAGS,
} from './frame.js'
import { type InnerCodec, readBatch, type StepBatch, validateBatch, writeBatch } from './step-batch.js'
import { readRoute, writeRoute } from './step-route.js'
import {
  type EndGeneration,
  type FetchHidden,
  type Message,
  type Ping,
  type Pong,
  type StepError,
  type StepRequest,
  type StepResult,
  type Truncate,
  validateMessage,
} from './validate-message.js'

export * from './step-batch.js'
export * from './step-route.js'
export * from './validate-message.js'

/**
 * Binary bodies of the mesh messages. Every body is little-endian; arrays are raw bytes,
 * 4-byte aligned from the body start, so the receiver views them in place.
 *
 *   id             u8 length, ASCII bytes, pad to 4
 *   StepRequest    id, u32 stepIndex, u32 startPos, u32 seqLen, f32 temperature, u32 deadlineMs,
 *                  u32 tokenCount, u32 hiddenCount, [tag], i32[tokenCount], hidden[hiddenCount],
 *                  then only with FrameFlag.Extensions: u32 fingerprintChallenge,
 *                  then only with FrameFlag.Candidates: u32 candidates,
 *                  then only with FrameFlag.Route: the route (wire/step-route.ts)
 *   StepResult     id, u32 stepIndex, u32 hiddenCount, u32 topkCount, [tag], f64 logSumExp (0 without
 *                  top-k), hidden[hiddenCount], f32[topkCount] values, i32[topkCount] ids,
 *                  then only with FrameFlag.Extensions (set iff a signature or fingerprint is sent):
 *                  u8 parts (1 signature, 2 fingerprint; not 0), u8 fingerprintLength >> 16,
 *                  u16 fingerprintLength & 0xffff (the length 0 without one), u8[64] signature,
 *                  u8[fingerprintLength] fingerprint
 *   StepError      id, u32 stepIndex, u8 nameLength, name, u8 codeLength, code,
 *                  u16 messageLength, UTF-8 message
 *   EndGeneration  id
 *   FetchHidden    id, u32 stepIndex
 *   Truncate       id, u32 length
 *   Ping, Pong     u32 nonce, f64 sentAt
 *
 * [tag] is a u32 hidden dtype tag, present only with FrameFlag.HiddenDtype (set iff hiddenDtype is
 * fp16; the only tag is 1, fp16). hidden[n] is f32[n] without it, u16[n] fp16 padded to 4 with it.
 * fp32 bodies are thus unchanged, and a peer that predates the flag refuses fp16 ones.
 */

/** Every message the wire carries: the single ones and the batches (wire/step-batch.ts). */
export type WireMessage = Message | StepBatch

/** A message as it arrives: a StepError carries the rebuilt error, ready to throw. */
export type ReceivedMessage =
  | Exclude<WireMessage, StepError>
  | (StepError & { readonly error: ButterflyError })

export interface EncodeOptions {
  /** Defaults to a per-module counter; must be unique among this sender's in-flight messages. */
  messageId?: number
  maxMessageBytes?: number
  /** Frame size cap, header included (tests use small values to force many chunks). */
  maxChunkBytes?: number
}

let nextMessageId = 1

/** Encodes a message into frames, each at most MAX_CHUNK_BYTES, ready to send in order. */
export function encodeMessage(msg: WireMessage, opts: EncodeOptions = {}): Uint8Array[] {
  const maxChunkBytes = opts.maxChunkBytes ?? MAX_CHUNK_BYTES
  if (
    !(
      Number.isInteger(maxChunkBytes) &&
      maxChunkBytes > FRAME_HEADER_BYTES &&
      maxChunkBytes <= MAX_CHUNK_BYTES
    )
  ) {
    throw new WireProtocolError(
      'ERR_WIRE_OPTIONS',
      `maxChunkBytes must be an integer in (${FRAME_HEADER_BYTES}, ${MAX_CHUNK_BYTES}], got ${maxChunkBytes}`,
    )
  }
  const maxMessageBytes = checkMaxMessageBytes(opts.maxMessageBytes)
  let messageId = opts.messageId
  if (messageId === undefined) {
    messageId = nextMessageId
    nextMessageId = (nextMessageId + 1) >>> 0
  }
  checkMessageId(messageId)
  const { type, flags, body } = encodeBody(msg)
  if (body.length > maxMessageBytes) {
    throw new WireProtocolError(
      'ERR_WIRE_TOO_LARGE',
      `${msg.type} body is ${body.length} bytes, over ${maxMessageBytes}`,
    )
  }
  return body.toFrames(type, messageId, maxChunkBytes - FRAME_HEADER_BYTES, flags)
}

/** Inner bodies of batches are single messages' bodies, encoded and decoded as they are. */
const INNER: InnerCodec = {
  encode: (m) => {
    const { flags, body } = encodeBody(m)
    return { flags, body }
  },
  decode: (type, body, flags) => decodeMessageBody(type, body, flags),
}

function encodeBody(msg: WireMessage): { type: FrameType; flags: number; body: BodyWriter } {
  const w = new BodyWriter()
  const kind = typeof msg === 'object' && msg !== null ? msg.type : undefined
  if (kind === 'StepRequests' || kind === 'StepResults') {
    writeBatch(w, validateBatch(msg as StepBatch), INNER)
    const type = kind === 'StepRequests' ? FrameType.StepRequests : FrameType.StepResults
    return { type, flags: 0, body: w }
  }
  const m = validateMessage(msg)
  let type: FrameType
  let flags = 0
  switch (m.type) {
    case 'StepRequest':
      type = FrameType.StepRequest
      writeId(w, m.generationId)
      w.u32(m.stepIndex).u32(m.startPos).u32(m.seqLen).f32(m.temperature).u32(m.deadlineMs)
      w.u32(m.tokens?.length ?? 0).u32(m.hidden?.length ?? 0)
      flags = writeTag(w, m.hiddenDtype === 'fp16')
      if (m.tokens !== undefined) w.array(m.tokens)
      if (m.hidden !== undefined) writeHidden(w, m.hidden, m.hiddenDtype === 'fp16')
      if (m.fingerprintChallenge !== undefined) {
        flags |= FrameFlag.Extensions
        w.u32(m.fingerprintChallenge)
      }
      if (m.candidates !== undefined) {
        flags |= FrameFlag.Candidates
        w.u32(m.candidates)
      }
      if (m.replyTo !== undefined) {
        flags |= FrameFlag.Route
        writeRoute(w, { route: m.route ?? [], replyTo: m.replyTo })
      }
      break
    case 'StepResult':
      type = FrameType.StepResult
      writeId(w, m.generationId)
      w.u32(m.stepIndex)
        .u32(m.hidden?.length ?? 0)
        .u32(m.topk?.values.length ?? 0)
      flags = writeTag(w, m.hiddenDtype === 'fp16')
      w.f64(m.topk?.logSumExp ?? 0)
      if (m.hidden !== undefined) writeHidden(w, m.hidden, m.hiddenDtype === 'fp16')
      if (m.topk !== undefined) w.array(m.topk.values).array(m.topk.ids)
      if (m.signature !== undefined || m.fingerprint !== undefined) {
        flags |= FrameFlag.Extensions
        const parts =
          (m.signature !== undefined ? EXT_SIGNATURE : 0) |
          (m.fingerprint !== undefined ? EXT_FINGERPRINT : 0)
        const length = m.fingerprint?.length ?? 0
        // A 24-bit length in the old reserved byte and u16: fingerprints under 64 KiB encode as before.
        w.u8(parts)
          .u8(length >>> 16)
          .u16(length & 0xffff)
        if (m.signature !== undefined) w.bytes(m.signature)
        if (m.fingerprint !== undefined) w.bytes(m.fingerprint)
      }
      break
    case 'StepError': {
      type = FrameType.StepError
      writeId(w, m.generationId)
      const message = utf8Bytes(m.error.message)
      w.u32(m.stepIndex)
      w.u8(m.error.name.length).bytes(utf8Bytes(m.error.name))
      w.u8(m.error.code.length).bytes(utf8Bytes(m.error.code))
      w.u16(message.length).bytes(message)
      break
    }
    case 'EndGeneration':
      type = FrameType.EndGeneration
      writeId(w, m.generationId)
      break
    case 'FetchHidden':
      type = FrameType.FetchHidden
      writeId(w, m.generationId)
      w.u32(m.stepIndex)
      break
    case 'Truncate':
      type = FrameType.Truncate
      writeId(w, m.generationId)
      w.u32(m.length)
      break
    case 'Ping':
    case 'Pong':
      type = m.type === 'Ping' ? FrameType.Ping : FrameType.Pong
      w.u32(m.nonce).f64(m.sentAt)
      break
  }
  return { type, flags, body: w }
}

/**
 * Decodes and validates a complete message body. Arrays in the result may be views into
 * `body`, so the caller must not reuse those bytes afterwards. `flags` are the frames' flags.
 */
export function decodeMessageBody(type: FrameType, body: Uint8Array, flags = 0): ReceivedMessage {
  if (type === FrameType.StepRequests || type === FrameType.StepResults) {
    if (flags !== 0)
      throw new WireProtocolError('ERR_WIRE_FLAGS', `frame flags 0x${flags.toString(16)} on a batch`)
    return readBatch(type, body, INNER)
  }
  const allowed =
    type === FrameType.StepRequest ? REQUEST_FLAGS : type === FrameType.StepResult ? STEP_FLAGS : 0
  if ((flags & ~allowed) !== 0) {
    throw new WireProtocolError('ERR_WIRE_FLAGS', `frame flags 0x${flags.toString(16)} on frame type ${type}`)
  }
  const r = new BodyReader(body)
  let msg: Message
  switch (type) {
    case FrameType.StepRequest: {
      const generationId = readId(r)
      const stepIndex = r.u32()
      const startPos = r.u32()
      const seqLen = r.u32()
      const temperature = r.f32()
      const deadlineMs = r.u32()
      const tokenCount = r.u32()
      const hiddenCount = r.u32()
      const fp16 = readTag(r, flags)
      const m: StepRequest = {
        type: 'StepRequest',
        generationId,
        stepIndex,
        startPos,
        seqLen,
        temperature,
        deadlineMs,
        ...(fp16 ? { hiddenDtype: 'fp16' as const } : {}),
      }
      if (tokenCount > 0) m.tokens = r.int32Array(tokenCount)
      if (hiddenCount > 0) m.hidden = fp16 ? r.float16Array(hiddenCount) : r.float32Array(hiddenCount)
      if ((flags & FrameFlag.Extensions) !== 0) m.fingerprintChallenge = r.u32()
      if ((flags & FrameFlag.Candidates) !== 0) m.candidates = r.u32()
      if ((flags & FrameFlag.Route) !== 0) Object.assign(m, readRoute(r))
      msg = m
      break
    }
    case FrameType.StepResult: {
      const generationId = readId(r)
      const stepIndex = r.u32()
      const hiddenCount = r.u32()
      const topkCount = r.u32()
      const fp16 = readTag(r, flags)
      const logSumExp = r.f64()
      const m: StepResult = { type: 'StepResult', generationId, stepIndex }
      if (fp16) m.hiddenDtype = 'fp16'
      if (hiddenCount > 0) m.hidden = fp16 ? r.float16Array(hiddenCount) : r.float32Array(hiddenCount)
      if (topkCount > 0) {
        const values = r.float32Array(topkCount)
        m.topk = { values, ids: r.int32Array(topkCount), logSumExp }
      } else if (logSumExp !== 0) {
        throw payloadError('StepResult without top-k carries a logSumExp')
      }
      if ((flags & FrameFlag.Extensions) !== 0) readExtensions(r, m)
      msg = m
      break
    }
    case FrameType.StepError: {
      const generationId = readId(r)
      const stepIndex = r.u32()
      const name = r.ascii(r.u8())
      const code = r.ascii(r.u8())
      const message = r.utf8(r.u16())
      msg = { type: 'StepError', generationId, stepIndex, error: { name, code, message } } satisfies StepError
      break
    }
    case FrameType.EndGeneration:
      msg = { type: 'EndGeneration', generationId: readId(r) } satisfies EndGeneration
      break
    case FrameType.FetchHidden:
      msg = { type: 'FetchHidden', generationId: readId(r), stepIndex: r.u32() } satisfies FetchHidden
      break
    case FrameType.Truncate:
      msg = { type: 'Truncate', generationId: readId(r), length: r.u32() } satisfies Truncate
      break
    case FrameType.Ping:
    case FrameType.Pong:
      msg = { type: type === FrameType.Ping ? 'Ping' : 'Pong', nonce: r.u32(), sentAt: r.f64() } satisfies
        | Ping
        | Pong
      break
    default:
      throw new WireProtocolError('ERR_WIRE_TYPE', `unknown frame type ${String(type)}`)
  }
  r.end()
  const valid = validateMessage(msg)
  if (valid.type === 'StepError') return { ...valid, error: errorFromWire(valid.error) }
  return valid
}

export function checkMaxMessageBytes(value: number | undefined): number {
  if (value === undefined) return MAX_MESSAGE_BYTES
  // Chunk counts must stay far below u32; 4 GiB would also exceed what a typed array can hold.
  if (!(Number.isSafeInteger(value) && value >= MAX_CHUNK_PAYLOAD_BYTES && value <= 2 ** 31)) {
    throw new WireProtocolError(
      'ERR_WIRE_OPTIONS',
      `maxMessageBytes must be an integer in [${MAX_CHUNK_PAYLOAD_BYTES}, 2^31], got ${value}`,
    )
  }
  return value
}
