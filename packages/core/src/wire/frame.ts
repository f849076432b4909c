import { WireProtocolError } from '../errors.js'

/**
 * One wire frame: a fixed 24-byte little-endian header and one chunk of a message body.
 *
 *   0  u8   magic 0xBF        8  u32 message id
 *   1  u8   magic 0x01       12  u32 chunk index
 *   2  u8   protocol version 16  u32 chunk count
 *   3  u8   frame type       20  u32 payload length
 *   4  u8   flags            24  payload
 *   5  u8×3 reserved (0)
 *
 * Data channels silently drop or reject messages over 256 KiB, so a frame never exceeds 64 KiB.
 *
 * Flags grow version 1 without breaking it: a message that needs none is byte-for-byte what it
 * always was, and a peer that predates a flag refuses it with ERR_WIRE_FLAGS instead of
 * misreading the body. Every chunk of a message carries the same flags.
 */

export const WIRE_MAGIC = [0xbf, 0x01] as const
export const WIRE_VERSION = 1
export const FRAME_HEADER_BYTES = 24
/** Largest frame, header included. */
export const MAX_CHUNK_BYTES = 64 * 1024
export const MAX_CHUNK_PAYLOAD_BYTES = MAX_CHUNK_BYTES - FRAME_HEADER_BYTES
/** Default cap on a reassembled message body. */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024

/** Frame flag bits. */
export const FrameFlag = {
  /**
   * StepResult: the body ends with the optional section (signature, fingerprint).
   * StepRequest: the body ends with a fingerprint challenge (answer with a fingerprint).
   */
  Extensions: 0x01,
  /**
   * StepRequest, StepResult: a u32 hidden dtype tag follows the counts and hidden states are in
   * that dtype (wire/hidden-dtype.ts); without it they are fp32. A StepRequest's dtype is also the
   * one its answer's hidden state must use.
   */
  HiddenDtype: 0x02,
  /**
   * StepRequest only: the body ends with a route (wire/step-route.ts): the peer forwards its output
   * to the next peer of the route instead of answering, and the route's last peer answers replyTo.
   */
  Route: 0x04,
  /**
   * StepRequest only: a u32 candidate count follows the fingerprint challenge (if any): the
   * last stage answers with at most that many of its top-k candidates.
   */
  Candidates: 0x08,
} as const

/** The flags StepRequest and StepResult may carry; other types carry none. */
export const STEP_FLAGS = FrameFlag.Extensions | FrameFlag.HiddenDtype
/** The flags a StepRequest may carry: the step flags, a route and a candidate count. */
export const REQUEST_FLAGS = STEP_FLAGS | FrameFlag.Route | FrameFlag.Candidates

export const FrameType = {
  StepRequest: 1,
  StepResult: 2,
  StepError: 3,
  EndGeneration: 4,
  Ping: 5,
  Pong: 6,
  FetchHidden: 7,
  Truncate: 8,
  /** Several StepRequests in one message (wire/step-batch.ts). */
  StepRequests: 9,
  /** Several StepResults of one batched run, signed once (wire/step-batch.ts). */
  StepResults: 10,
} as const
export type FrameType = (typeof FrameType)[keyof typeof FrameType]

export interface Frame {
  readonly type: FrameType
  readonly messageId: number
  readonly chunkIndex: number
  readonly chunkCount: number
  /** FrameFlag bits; absent means 0. Decoding always sets it. */
  readonly flags?: number
  /** On decode, a view into the frame's bytes (no copy). */
  readonly payload: Uint8Array
}

const U32_MAX = 0xffffffff

export function isFrameType(value: number): value is FrameType {
  return Number.isInteger(value) && value >= FrameType.StepRequest && value <= FrameType.StepResults
}

/** Writes a header into `target[0..24)`; the caller has checked every field. */
export function writeFrameHeader(
  target: Uint8Array,
  type: FrameType,
  messageId: number,
  chunkIndex: number,
  chunkCount: number,
  payloadLength: number,
  flags = 0,
): void {
  const view = new DataView(target.buffer, target.byteOffset, FRAME_HEADER_BYTES)
  view.setUint8(0, WIRE_MAGIC[0])
  view.setUint8(1, WIRE_MAGIC[1])
  view.setUint8(2, WIRE_VERSION)
  view.setUint8(3, type)
  // Reserved bytes stay 0: a fresh Uint8Array is zeroed, but the target may be reused.
  view.setUint32(4, flags, true)
  view.setUint32(8, messageId, true)
  view.setUint32(12, chunkIndex, true)
  view.setUint32(16, chunkCount, true)
  view.setUint32(20, payloadLength, true)
}

export function checkMessageId(messageId: number): void {
  if (!(Number.isInteger(messageId) && messageId >= 0 && messageId <= U32_MAX)) {
    throw new WireProtocolError('ERR_WIRE_CHUNK', `message id must be a u32, got ${String(messageId)}`)
  }
}

export function encodeFrame(frame: Frame): Uint8Array {
  const { type, messageId, chunkIndex, chunkCount, payload } = frame
  if (!isFrameType(type)) throw new WireProtocolError('ERR_WIRE_TYPE', `unknown frame type ${String(type)}`)
  const flags = frame.flags ?? 0
  checkFlags(type, flags)
  checkMessageId(messageId)
  checkChunkPosition(chunkIndex, chunkCount)
  if (!(payload instanceof Uint8Array))
    throw new WireProtocolError('ERR_WIRE_PAYLOAD', 'payload must be a Uint8Array')
  checkPayloadLength(payload.length)
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length)
  writeFrameHeader(out, type, messageId, chunkIndex, chunkCount, payload.length, flags)
  out.set(payload, FRAME_HEADER_BYTES)
  return out
}

/** Parses and checks one frame from a peer. Accepts the ArrayBuffer a data channel delivers. */
export function decodeFrame(input: Uint8Array | ArrayBuffer): Frame {
  let bytes: Uint8Array
  if (input instanceof Uint8Array) bytes = input
  else if (input instanceof ArrayBuffer) bytes = new Uint8Array(input)
  else throw new WireProtocolError('ERR_WIRE_MAGIC', 'not a binary wire frame (expected bytes)')

  // Magic and version first, so a peer speaking something else gets the most useful error.
  if (bytes.length < 2) throw truncatedHeader(bytes.length)
  if (bytes[0] !== WIRE_MAGIC[0] || bytes[1] !== WIRE_MAGIC[1]) {
    throw new WireProtocolError(
      'ERR_WIRE_MAGIC',
      `bad frame magic 0x${hex(bytes[0])}${hex(bytes[1])} (expected 0x${hex(WIRE_MAGIC[0])}${hex(WIRE_MAGIC[1])})`,
    )
  }
  if (bytes.length < 3) throw truncatedHeader(bytes.length)
  const version = bytes[2] as number
  if (version !== WIRE_VERSION) {
    throw new WireProtocolError(
      'ERR_WIRE_VERSION',
      `peer speaks wire protocol version ${version}, this peer speaks version ${WIRE_VERSION}`,
    )
  }
  if (bytes.length < FRAME_HEADER_BYTES) throw truncatedHeader(bytes.length)

  const view = new DataView(bytes.buffer, bytes.byteOffset, FRAME_HEADER_BYTES)
  const type = view.getUint8(3)
  if (!isFrameType(type)) throw new WireProtocolError('ERR_WIRE_TYPE', `unknown frame type ${type}`)
  const flags = view.getUint8(4)
  const reserved = view.getUint8(5) | view.getUint8(6) | view.getUint8(7)
  if (reserved !== 0) throw new WireProtocolError('ERR_WIRE_FLAGS', 'non-zero reserved header bytes')
  checkFlags(type, flags)
  const messageId = view.getUint32(8, true)
  const chunkIndex = view.getUint32(12, true)
  const chunkCount = view.getUint32(16, true)
  const payloadLength = view.getUint32(20, true)

  if (bytes.length > MAX_CHUNK_BYTES) {
    throw new WireProtocolError(
      'ERR_WIRE_TOO_LARGE',
      `frame is ${bytes.length} bytes, over ${MAX_CHUNK_BYTES}`,
    )
  }
  checkPayloadLength(payloadLength)
  const end = FRAME_HEADER_BYTES + payloadLength
  if (end > bytes.length) {
    throw new WireProtocolError(
      'ERR_WIRE_TRUNCATED',
      `frame header announces ${payloadLength} payload bytes but only ${bytes.length - FRAME_HEADER_BYTES} follow`,
    )
  }
  if (end < bytes.length) {
    throw new WireProtocolError('ERR_WIRE_PAYLOAD', `frame has ${bytes.length - end} bytes after its payload`)
  }
  checkChunkPosition(chunkIndex, chunkCount)
  return {
    type,
    messageId,
    chunkIndex,
    chunkCount,
    flags,
    payload: bytes.subarray(FRAME_HEADER_BYTES, end),
  }
}

function checkFlags(type: FrameType, flags: number): void {
  const allowed =
    type === FrameType.StepRequest ? REQUEST_FLAGS : type === FrameType.StepResult ? STEP_FLAGS : 0
  if (!(Number.isInteger(flags) && flags >= 0 && (flags & ~allowed) === 0)) {
    throw new WireProtocolError(
      'ERR_WIRE_FLAGS',
      `unknown frame flags 0x${hex(flags)} for frame type ${type}; the peer may speak a newer protocol`,
    )
  }
}

function checkChunkPosition(chunkIndex: number, chunkCount: number): void {
  if (!(Number.isInteger(chunkCount) && chunkCount >= 1 && chunkCount <= U32_MAX)) {
    throw new WireProtocolError('ERR_WIRE_CHUNK', `chunk count must be a u32 >= 1, got ${String(chunkCount)}`)
  }
  if (!(Number.isInteger(chunkIndex) && chunkIndex >= 0 && chunkIndex < chunkCount)) {
    throw new WireProtocolError(
      'ERR_WIRE_CHUNK',
      `chunk index ${String(chunkIndex)} is not below count ${chunkCount}`,
    )
  }
}

function checkPayloadLength(length: number): void {
  // An empty chunk carries nothing and would only let a peer inflate the chunk count.
  if (length === 0) throw new WireProtocolError('ERR_WIRE_CHUNK', 'empty chunk payload')
  if (length > MAX_CHUNK_PAYLOAD_BYTES) {
    throw new WireProtocolError(
      'ERR_WIRE_TOO_LARGE',
      `chunk payload of ${length} bytes is over ${MAX_CHUNK_PAYLOAD_BYTES} (${MAX_CHUNK_BYTES} with header)`,
    )
  }
}

function truncatedHeader(length: number): WireProtocolError {
  return new WireProtocolError(
    'ERR_WIRE_TRUNCATED',
    `frame is ${length} bytes, shorter than the ${FRAME_HEADER_BYTES}-byte header`,
  )
}

function hex(byte: number | undefined): string {
  return (byte ?? 0).toString(16).padStart(2, '0')
}
