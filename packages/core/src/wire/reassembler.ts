import { WireProtocolError } from '../errors.js'
import { decodeFrame, type FrameType, MAX_CHUNK_PAYLOAD_BYTES } from './frame.js'
import { checkMaxMessageBytes, decodeMessageBody, type ReceivedMessage } from './messages.js'

export interface ReassemblerOptions {
  /** Largest reassembled body; default MAX_MESSAGE_BYTES (64 MiB). */
  maxMessageBytes?: number
  /** Partial messages held at once; default 16. */
  maxPending?: number
  /** Bytes held across all partial messages; default 2 * maxMessageBytes. */
  maxBufferedBytes?: number
  /** A partial message is dropped this long after its first chunk; default 30 s. */
  timeoutMs?: number
  now?: () => number
}

interface Partial {
  readonly type: FrameType
  readonly flags: number
  readonly chunks: (Uint8Array | undefined)[]
  readonly startedAt: number
  received: number
  bytes: number
}

/**
 * Rebuilds messages from one peer's frames, in any order. Memory is bounded: at most
 * maxPending partial messages and maxBufferedBytes of chunks, each partial expiring after
 * timeoutMs. A bad chunk throws a WireProtocolError and drops the message it belonged to.
 */
export class Reassembler {
  readonly maxMessageBytes: number
  readonly maxPending: number
  readonly maxBufferedBytes: number
  readonly timeoutMs: number
  private readonly now: () => number
  private readonly pending = new Map<number, Partial>()
  private buffered = 0
  /** Partial messages dropped because they expired. */
  expired = 0

  constructor(opts: ReassemblerOptions = {}) {
    this.maxMessageBytes = checkMaxMessageBytes(opts.maxMessageBytes)
    this.maxPending = checkCount('maxPending', opts.maxPending ?? 16, 0)
    this.maxBufferedBytes = checkCount(
      'maxBufferedBytes',
      opts.maxBufferedBytes ?? 2 * this.maxMessageBytes,
      1,
    )
    this.timeoutMs = checkCount('timeoutMs', opts.timeoutMs ?? 30_000, 1)
    if (opts.now !== undefined && typeof opts.now !== 'function') {
      throw new WireProtocolError('ERR_WIRE_OPTIONS', 'now must be a function')
    }
    this.now = opts.now ?? (() => Date.now())
  }

  get pendingMessages(): number {
    return this.pending.size
  }

  get bufferedBytes(): number {
    return this.buffered
  }

  /** Takes one frame; returns the message it completes, or undefined while chunks are missing. */
  push(input: Uint8Array | ArrayBuffer): ReceivedMessage | undefined {
    const frame = decodeFrame(input)
    const { type, messageId, chunkIndex, chunkCount, payload } = frame
    const flags = frame.flags ?? 0
    const now = this.now()
    this.expire(now)

    let p = this.pending.get(messageId)
    if (p !== undefined && (p.type !== type || p.flags !== flags || p.chunks.length !== chunkCount)) {
      this.drop(messageId, p)
      throw new WireProtocolError(
        'ERR_WIRE_CHUNK',
        `message ${messageId}: chunk says type ${type} (flags ${flags}) of ${chunkCount} chunks, earlier chunks said type ${p.type} (flags ${p.flags}) of ${p.chunks.length}`,
      )
    }
    if (chunkCount === 1) return this.decode(type, payload, flags)

    // Every chunk but one could be full, so a count this high can only describe an oversized message.
    if (chunkCount > Math.ceil(this.maxMessageBytes / MAX_CHUNK_PAYLOAD_BYTES)) {
      throw new WireProtocolError(
        'ERR_WIRE_TOO_LARGE',
        `message ${messageId} announces ${chunkCount} chunks, more than a ${this.maxMessageBytes}-byte message needs`,
      )
    }
    if (p === undefined) {
      if (this.pending.size >= this.maxPending) {
        throw new WireProtocolError(
          'ERR_WIRE_PENDING',
          `too many partial messages (${this.pending.size}); refusing message ${messageId}`,
        )
      }
      p = {
        type,
        flags,
        chunks: new Array(chunkCount).fill(undefined),
        startedAt: now,
        received: 0,
        bytes: 0,
      }
      this.pending.set(messageId, p)
    }
    if (p.chunks[chunkIndex] !== undefined) {
      this.drop(messageId, p)
      throw new WireProtocolError('ERR_WIRE_CHUNK', `message ${messageId}: duplicate chunk ${chunkIndex}`)
    }
    if (p.bytes + payload.length > this.maxMessageBytes) {
      this.drop(messageId, p)
      throw new WireProtocolError(
        'ERR_WIRE_TOO_LARGE',
        `message ${messageId} exceeds ${this.maxMessageBytes} bytes after chunk ${chunkIndex}`,
      )
    }
    if (this.buffered + payload.length > this.maxBufferedBytes) {
      this.drop(messageId, p)
      throw new WireProtocolError(
        'ERR_WIRE_PENDING',
        `partial messages would hold over ${this.maxBufferedBytes} bytes; dropped message ${messageId}`,
      )
    }
    p.chunks[chunkIndex] = payload
    p.received++
    p.bytes += payload.length
    this.buffered += payload.length
    if (p.received < chunkCount) return undefined

    this.drop(messageId, p)
    const body = new Uint8Array(p.bytes)
    let at = 0
    for (const chunk of p.chunks) {
      body.set(chunk as Uint8Array, at)
      at += (chunk as Uint8Array).length
    }
    return this.decode(type, body, p.flags)
  }

  /** Drops partial messages older than timeoutMs; returns how many. push() calls it too. */
  expire(now: number = this.now()): number {
    let n = 0
    for (const [id, p] of this.pending) {
      if (now - p.startedAt > this.timeoutMs) {
        this.drop(id, p)
        n++
      }
    }
    this.expired += n
    return n
  }

  /** Forgets every partial message (e.g. when the channel closes). */
  clear(): void {
    this.pending.clear()
    this.buffered = 0
  }

  private decode(type: FrameType, body: Uint8Array, flags: number): ReceivedMessage {
    if (body.length > this.maxMessageBytes) {
      throw new WireProtocolError(
        'ERR_WIRE_TOO_LARGE',
        `message body of ${body.length} bytes is over ${this.maxMessageBytes}`,
      )
    }
    return decodeMessageBody(type, body, flags)
  }

  private drop(id: number, p: Partial): void {
    this.pending.delete(id)
    this.buffered -= p.bytes
  }
}

function checkCount(name: string, value: number, min: number): number {
  if (!(Number.isSafeInteger(value) && value >= min)) {
    throw new WireProtocolError(
      'ERR_WIRE_OPTIONS',
      `${name} must be an integer >= ${min}, got ${String(value)}`,
    )
  }
  return value
}
