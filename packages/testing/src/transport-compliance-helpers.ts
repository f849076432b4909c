// Plumbing of the transport compliance suite: connecting a pair, awaiting frames and messages,
// recording sends, and the tables of big and malformed inputs the suite feeds.
import {
  encodeFrame,
  encodeMessage,
  FRAME_HEADER_BYTES,
  type FrameChannel,
  FrameType,
  type MessageConnection,
  type ReceivedMessage,
  type StepRequest,
  type Transport,
  TransportError,
  type WireProtocolErrorCode,
} from '@butterfly/core'
import { expect } from 'vitest'

export async function connect(
  a: Transport,
  b: Transport,
): Promise<{ ab: FrameChannel; ba: FrameChannel; from: string }> {
  let stop = (): void => {}
  const incoming = new Promise<[string, FrameChannel]>((resolve) => {
    stop = b.onIncoming((from, channel) => resolve([from, channel]))
  })
  const ab = await a.dial(b.peerId)
  const [from, ba] = await incoming
  stop()
  return { ab, ba, from }
}

export function nextFrame(channel: FrameChannel): Promise<Uint8Array> {
  return new Promise((resolve) => channel.onFrame(resolve))
}

export function collect(conn: MessageConnection, n: number): Promise<ReceivedMessage[]> {
  return new Promise((resolve, reject) => {
    const out: ReceivedMessage[] = []
    conn.onMessage((m) => {
      out.push(m)
      if (out.length === n) resolve(out)
    })
    conn.onClose((reason) => reject(reason ?? new Error(`closed after ${out.length} of ${n} messages`)))
  })
}

export async function expectClosed(p: Promise<unknown>): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(TransportError)
  expect((err as TransportError).code).toBe('ERR_CHANNEL_CLOSED')
}

/** Wraps a channel to record every frame size and the bufferedAmount right after each send. */
export function recordSends(inner: FrameChannel) {
  const sizes: number[] = []
  const bufferedAfter: number[] = []
  let first = (): void => {}
  const firstSend = new Promise<void>((r) => {
    first = r
  })
  const channel: FrameChannel = {
    send(frame) {
      inner.send(frame)
      sizes.push(frame.length)
      bufferedAfter.push(inner.bufferedAmount)
      first()
    },
    get bufferedAmount() {
      return inner.bufferedAmount
    },
    get closed() {
      return inner.closed
    },
    onFrame: (h) => inner.onFrame(h),
    onClose: (h) => inner.onClose(h),
    close: () => inner.close(),
    ...(inner.waitForLow === undefined
      ? {}
      : { waitForLow: (s?: AbortSignal) => inner.waitForLow?.(s) as Promise<void> }),
  }
  return { channel, sizes, bufferedAfter, firstSend }
}

export function bigRequest(seqLen: number, hiddenSize: number, stepIndex = 0): StepRequest {
  const hidden = new Float32Array(seqLen * hiddenSize)
  for (let i = 0; i < hidden.length; i++) hidden[i] = ((i * 2654435761) % 100_003) / 7 - stepIndex
  return {
    type: 'StepRequest',
    generationId: 'big',
    stepIndex,
    startPos: 0,
    seqLen,
    temperature: 0,
    deadlineMs: 0,
    hidden,
  }
}

export function firstMismatch(x: Float32Array, y: Float32Array): number {
  if (x.length !== y.length) return Math.min(x.length, y.length)
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return i
  return -1
}

/** Frames a hostile or broken peer might send, each with the error code it must produce. */
export function malformedFrames(): { name: string; bytes: Uint8Array; code: WireProtocolErrorCode }[] {
  const ping = encodeMessage({ type: 'Ping', nonce: 1, sentAt: 0 }, { messageId: 1 })[0] as Uint8Array
  const patch = (at: number, value: number, base = ping): Uint8Array => {
    const out = base.slice()
    out[at] = value
    return out
  }
  const u32 = (at: number, value: number, base = ping): Uint8Array => {
    const out = base.slice()
    new DataView(out.buffer).setUint32(at, value, true)
    return out
  }
  const withTail = new Uint8Array(ping.length + 1)
  withTail.set(ping)
  const header = ping.slice(0, FRAME_HEADER_BYTES)
  new DataView(header.buffer).setUint32(20, 0, true)
  return [
    { name: 'not our protocol', bytes: Uint8Array.from({ length: 40 }, (_, i) => i), code: 'ERR_WIRE_MAGIC' },
    { name: 'one byte', bytes: Uint8Array.from([0xbf]), code: 'ERR_WIRE_TRUNCATED' },
    { name: 'short header', bytes: ping.slice(0, 10), code: 'ERR_WIRE_TRUNCATED' },
    { name: 'another protocol version', bytes: patch(2, 99), code: 'ERR_WIRE_VERSION' },
    { name: 'unknown frame type', bytes: patch(3, 200), code: 'ERR_WIRE_TYPE' },
    { name: 'flags set', bytes: patch(4, 1), code: 'ERR_WIRE_FLAGS' },
    { name: 'payload longer than announced', bytes: withTail, code: 'ERR_WIRE_PAYLOAD' },
    { name: 'payload shorter than announced', bytes: u32(20, ping.length), code: 'ERR_WIRE_TRUNCATED' },
    { name: 'empty chunk', bytes: header, code: 'ERR_WIRE_CHUNK' },
    { name: 'chunk index past count', bytes: u32(12, 5, u32(16, 2)), code: 'ERR_WIRE_CHUNK' },
    { name: 'absurd chunk count', bytes: u32(16, 0xffffffff), code: 'ERR_WIRE_TOO_LARGE' },
    {
      name: 'valid frame, garbage body',
      bytes: encodeFrame({
        type: FrameType.Ping,
        messageId: 2,
        chunkIndex: 0,
        chunkCount: 1,
        payload: Uint8Array.from([1, 2, 3]),
      }),
      code: 'ERR_WIRE_PAYLOAD',
    },
  ]
}
