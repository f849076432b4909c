import { TransportError, WireProtocolError } from '../errors.js'
import {
  DEFAULT_HIGH_WATER_MARK,
  type Sleep,
  sendWhileBelow,
  sendWithBackpressure,
} from '../wire/backpressure.js'
import { encodeMessage, type ReceivedMessage, type WireMessage } from '../wire/messages.js'
import { Reassembler, type ReassemblerOptions } from '../wire/reassembler.js'
import type { FrameChannel } from './transport.js'

export interface MessageConnectionOptions {
  /** Malformed frames or messages tolerated before the connection closes itself; default 16. */
  maxProtocolErrors?: number
  /** Largest message body sent or accepted; default MAX_MESSAGE_BYTES (64 MiB). */
  maxMessageBytes?: number
  /** Frame size cap, header included; default MAX_CHUNK_BYTES. Tests lower it to force chunking. */
  maxChunkBytes?: number
  /** Sending waits while the channel holds more than this many bytes; default 1 MiB, at most 8 MiB. */
  highWaterMark?: number
  /** How often bufferedAmount is re-read while waiting; default 10 ms. */
  pollMs?: number
  sleep?: Sleep
  /** Limits on partial incoming messages (count, bytes, age). */
  reassembler?: Omit<ReassemblerOptions, 'maxMessageBytes'>
}

export const DEFAULT_MAX_PROTOCOL_ERRORS = 16
/**
 * libwebrtc (Chrome, @roamhq/wrtc) holds at most 16 MiB per data channel and, past that,
 * drops frames without an error (measured with @roamhq/wrtc 0.10); stay well below.
 */
export const MAX_HIGH_WATER_MARK = 8 * 1024 * 1024

type Unsubscribe = () => void

/**
 * Typed messages over any FrameChannel: chunking and backpressure on the way out, reassembly
 * and validation on the way in. The peer is untrusted: nothing it sends can throw out of the
 * channel's callback; bad input is reported, counted, and ends the connection past a limit.
 */
export class MessageConnection {
  readonly channel: FrameChannel
  readonly maxProtocolErrors: number
  private readonly opts: MessageConnectionOptions
  private readonly highWaterMark: number
  /** Whether a send may skip sendWithBackpressure when nothing has to wait (see sendFrames). */
  private readonly sendsAtOnce: boolean
  private readonly reassembler: Reassembler
  private readonly messageHandlers = new Set<(msg: ReceivedMessage) => void>()
  private readonly errorHandlers = new Set<(err: WireProtocolError) => void>()
  private readonly closeHandlers = new Set<(reason?: Error) => void>()
  /** Aborted on close so sends waiting for the channel to drain stop waiting. */
  private readonly inFlight = new Set<AbortController>()
  private sendTail: Promise<void> = Promise.resolve()
  private nextMessageId = 1
  private isClosed = false
  private closeReason: Error | undefined
  private errorCount = 0
  private sentBytes = 0
  private receivedBytes = 0

  constructor(channel: FrameChannel, opts: MessageConnectionOptions = {}) {
    const max = opts.maxProtocolErrors ?? DEFAULT_MAX_PROTOCOL_ERRORS
    if (!(Number.isSafeInteger(max) && max >= 1)) {
      throw new WireProtocolError(
        'ERR_WIRE_OPTIONS',
        `maxProtocolErrors must be an integer >= 1, got ${String(max)}`,
      )
    }
    const hwm = opts.highWaterMark
    if (hwm !== undefined && !(Number.isFinite(hwm) && hwm >= 0 && hwm <= MAX_HIGH_WATER_MARK)) {
      throw new WireProtocolError(
        'ERR_WIRE_OPTIONS',
        `highWaterMark must be in [0, ${MAX_HIGH_WATER_MARK}], got ${hwm}`,
      )
    }
    this.channel = channel
    this.maxProtocolErrors = max
    this.opts = opts
    this.highWaterMark = hwm ?? DEFAULT_HIGH_WATER_MARK
    // A bad pollMs is sendWithBackpressure's to reject, on every send as before.
    const poll = opts.pollMs
    this.sendsAtOnce = poll === undefined || (Number.isFinite(poll) && poll > 0)
    const reassemblerOpts: ReassemblerOptions = { ...opts.reassembler }
    if (opts.maxMessageBytes !== undefined) reassemblerOpts.maxMessageBytes = opts.maxMessageBytes
    this.reassembler = new Reassembler(reassemblerOpts)
    channel.onFrame((frame) => this.receive(frame))
    channel.onClose((reason) => this.shutdown(reason))
    if (channel.closed) this.shutdown()
  }

  get closed(): boolean {
    return this.isClosed || this.channel.closed
  }

  /** Frame bytes handed to the channel so far (messages sent whole). */
  get bytesSent(): number {
    return this.sentBytes
  }

  /** Frame bytes received so far, malformed ones included. */
  get bytesReceived(): number {
    return this.receivedBytes
  }

  /** Malformed frames or messages received so far. */
  get protocolErrors(): number {
    return this.errorCount
  }

  /**
   * Sends one message. Messages go out whole and in call order; the promise settles once the
   * last frame is handed to the channel. Rejects with ERR_CHANNEL_CLOSED once closed, with the
   * signal's reason on abort (a message cut short is dropped by the peer's reassembler), and
   * with a WireProtocolError if the message is invalid.
   */
  send(msg: WireMessage, signal?: AbortSignal): Promise<void> {
    if (this.closed) return Promise.reject(closedError(this.closeReason))
    let frames: Uint8Array[]
    try {
      const messageId = this.nextMessageId
      this.nextMessageId = (this.nextMessageId + 1) >>> 0
      frames = encodeMessage(msg, {
        messageId,
        ...(this.opts.maxChunkBytes === undefined ? {} : { maxChunkBytes: this.opts.maxChunkBytes }),
        ...(this.opts.maxMessageBytes === undefined ? {} : { maxMessageBytes: this.opts.maxMessageBytes }),
      })
    } catch (err) {
      return Promise.reject(err)
    }
    const run = this.sendTail.then(() => this.sendFrames(frames, signal))
    this.sendTail = run.catch(() => {})
    return run
  }

  onMessage(handler: (msg: ReceivedMessage) => void): Unsubscribe {
    this.messageHandlers.add(handler)
    return () => this.messageHandlers.delete(handler)
  }

  /** Handlers subscribed with onMessage now (a gateway checks that retired stages let go). */
  get messageListeners(): number {
    return this.messageHandlers.size
  }

  /** Every malformed frame or message from the peer, with its WireProtocolError code. */
  onProtocolError(handler: (err: WireProtocolError) => void): Unsubscribe {
    this.errorHandlers.add(handler)
    return () => this.errorHandlers.delete(handler)
  }

  /** Fires once, whichever side closed; `reason` is set when it was not a local close(). */
  onClose(handler: (reason?: Error) => void): Unsubscribe {
    this.closeHandlers.add(handler)
    return () => this.closeHandlers.delete(handler)
  }

  close(): void {
    this.shutdown()
  }

  private async sendFrames(frames: Uint8Array[], signal: AbortSignal | undefined): Promise<void> {
    if (this.closed) throw closedError(this.closeReason)
    signal?.throwIfAborted()
    // The usual case (a step's message, a queue below the high-water mark) needs no wait, so
    // none of the abort plumbing below: its frames go at once, and only the rest waits.
    let rest = frames
    if (this.sendsAtOnce) {
      let sent: number
      try {
        sent = sendWhileBelow(this.channel, frames, this.highWaterMark)
      } catch (err) {
        if (this.closed) throw closedError(this.closeReason, err)
        throw err
      }
      if (sent === frames.length) {
        for (const f of frames) this.sentBytes += f.byteLength
        return
      }
      rest = frames.slice(sent)
    }
    const inner = new AbortController()
    const onAbort = (): void => inner.abort(signal?.reason)
    signal?.addEventListener('abort', onAbort, { once: true })
    this.inFlight.add(inner)
    try {
      const waitForLow = this.channel.waitForLow?.bind(this.channel)
      await sendWithBackpressure(this.channel, rest, {
        signal: inner.signal,
        ...(waitForLow === undefined ? {} : { waitForLow }),
        ...(this.opts.highWaterMark === undefined ? {} : { highWaterMark: this.opts.highWaterMark }),
        ...(this.opts.pollMs === undefined ? {} : { pollMs: this.opts.pollMs }),
        ...(this.opts.sleep === undefined ? {} : { sleep: this.opts.sleep }),
      })
      for (const f of frames) this.sentBytes += f.byteLength
    } catch (err) {
      if (signal?.aborted && err === signal.reason) throw err
      if (this.closed) throw closedError(this.closeReason, err)
      throw err
    } finally {
      signal?.removeEventListener('abort', onAbort)
      this.inFlight.delete(inner)
    }
  }

  private receive(frame: Uint8Array): void {
    if (this.isClosed) return
    this.receivedBytes += frame.byteLength
    let msg: ReceivedMessage | undefined
    try {
      msg = this.reassembler.push(frame)
    } catch (err) {
      this.protocolError(err)
      return
    }
    if (msg !== undefined) callAll(this.messageHandlers, msg)
  }

  private protocolError(err: unknown): void {
    const wireErr =
      err instanceof WireProtocolError
        ? err
        : new WireProtocolError('ERR_WIRE_PAYLOAD', `undecodable frame: ${String(err)}`, { cause: err })
    this.errorCount++
    callAll(this.errorHandlers, wireErr)
    if (this.errorCount >= this.maxProtocolErrors && !this.isClosed) {
      this.shutdown(
        new WireProtocolError(
          wireErr.code,
          `closing after ${this.errorCount} protocol errors from the peer; last: ${wireErr.message}`,
          { cause: wireErr },
        ),
      )
    }
  }

  private shutdown(reason?: Error): void {
    if (this.isClosed) return
    this.isClosed = true
    this.closeReason = reason
    this.reassembler.clear()
    const closed = closedError(reason)
    for (const c of this.inFlight) c.abort(closed)
    this.inFlight.clear()
    try {
      this.channel.close()
    } catch {
      // Already closing underneath us; nothing left to release.
    }
    const handlers = [...this.closeHandlers]
    this.closeHandlers.clear()
    callAll(handlers, reason)
    this.messageHandlers.clear()
    this.errorHandlers.clear()
  }
}

function closedError(reason?: Error, cause?: unknown): TransportError {
  const why = reason === undefined ? '' : `: ${reason.message}`
  return new TransportError('ERR_CHANNEL_CLOSED', `channel is closed${why}`, { cause: cause ?? reason })
}

/**
 * Runs every handler even if one throws; a throwing handler is a bug in our code, not the
 * peer's, so it is rethrown outside the channel callback where it cannot break delivery.
 */
function callAll<T>(handlers: Iterable<(arg: T) => void>, arg: T): void {
  for (const handler of handlers) {
    try {
      handler(arg)
    } catch (err) {
      setTimeout(() => {
        throw err
      }, 0)
    }
  }
}
