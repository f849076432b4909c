import { describe, expect, test } from 'vitest'
import { TransportError, WireProtocolError } from '../src/errors.js'
import { MessageConnection } from '../src/transport/message-connection.js'
import type { FrameChannel } from '../src/transport/transport.js'
import { FRAME_HEADER_BYTES } from '../src/wire/frame.js'
import type { Message, ReceivedMessage } from '../src/wire/messages.js'

/** A channel under the test's control: frames sent land in `sent`, `deliver` plays the peer. */
class FakeChannel implements FrameChannel {
  readonly sent: Uint8Array[] = []
  bufferedAmount = 0
  closed = false
  private frameHandler: (frame: Uint8Array) => void = () => {}
  private closeHandler: (reason?: Error) => void = () => {}
  private low: (() => void)[] = []
  waitForLowCalls = 0
  private onWait: () => void = () => {}
  /** Resolves once a sender starts waiting for the queue to drain. */
  readonly waiting = new Promise<void>((r) => {
    this.onWait = r
  })

  send(frame: Uint8Array): void {
    if (this.closed) throw new TransportError('ERR_CHANNEL_CLOSED', 'closed')
    this.sent.push(frame)
  }
  waitForLow(): Promise<void> {
    this.waitForLowCalls++
    this.onWait()
    return new Promise((r) => this.low.push(r))
  }
  drain(): void {
    this.bufferedAmount = 0
    for (const r of this.low.splice(0)) r()
  }
  onFrame(handler: (frame: Uint8Array) => void): void {
    this.frameHandler = handler
  }
  onClose(handler: (reason?: Error) => void): void {
    this.closeHandler = handler
  }
  close(): void {
    this.closed = true
  }
  deliver(frame: Uint8Array): void {
    this.frameHandler(frame)
  }
  peerClosed(reason?: Error): void {
    this.closed = true
    this.closeHandler(reason)
  }
}

/** A sleep that only ends on abort: any progress must come from waitForLow. */
const never = (_ms: number, signal: AbortSignal) =>
  new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }))

const ping = (nonce: number): Message => ({ type: 'Ping', nonce, sentAt: 0 })

describe('MessageConnection', () => {
  test.each([0, -1, 1.5, Number.NaN])('rejects maxProtocolErrors = %s', (bad) => {
    expect(() => new MessageConnection(new FakeChannel(), { maxProtocolErrors: bad })).toThrow(
      WireProtocolError,
    )
  })

  test.each([-1, Number.NaN, 16 * 1024 * 1024])('rejects highWaterMark = %s', (bad) => {
    expect(() => new MessageConnection(new FakeChannel(), { highWaterMark: bad })).toThrow(WireProtocolError)
  })

  test('counts the frame bytes it sends and receives, malformed frames included', async () => {
    const left = new FakeChannel()
    const right = new FakeChannel()
    const tx = new MessageConnection(left, { maxChunkBytes: FRAME_HEADER_BYTES + 16 })
    const rx = new MessageConnection(right)
    await tx.send(ping(1))
    await tx.send(ping(2))
    const total = left.sent.reduce((n, f) => n + f.byteLength, 0)
    expect(left.sent).toHaveLength(2)
    expect(tx.bytesSent).toBe(total)
    for (const f of left.sent) right.deliver(f)
    expect(rx.bytesReceived).toBe(total)
    right.deliver(Uint8Array.of(1, 2, 3))
    expect(rx.bytesReceived).toBe(total + 3)
    expect(rx.bytesSent).toBe(0)
  })

  test('round-trips messages through tiny chunks', () => {
    const left = new FakeChannel()
    const right = new FakeChannel()
    const tx = new MessageConnection(left, { maxChunkBytes: FRAME_HEADER_BYTES + 16 })
    const rx = new MessageConnection(right)
    const got: ReceivedMessage[] = []
    rx.onMessage((m) => got.push(m))
    const hidden = Float32Array.from({ length: 100 }, (_, i) => i / 3)
    return tx.send({ type: 'StepResult', generationId: 'g', stepIndex: 4, hidden }).then(() => {
      expect(left.sent.length).toBeGreaterThanOrEqual(25)
      for (const f of left.sent) right.deliver(f)
      expect(got).toHaveLength(1)
      expect(Array.from((got[0] as { hidden: Float32Array }).hidden)).toEqual(Array.from(hidden))
    })
  })

  test('an invalid message rejects with a WireProtocolError and sends nothing', async () => {
    const ch = new FakeChannel()
    const conn = new MessageConnection(ch)
    const bad = { type: 'Ping', nonce: -1, sentAt: 0 } as Message
    await expect(conn.send(bad)).rejects.toMatchObject({
      name: 'WireProtocolError',
      code: 'ERR_WIRE_PAYLOAD',
    })
    expect(ch.sent).toHaveLength(0)
    await conn.send(ping(1))
    expect(ch.sent).toHaveLength(1)
  })

  test('waits on waitForLow above the high-water mark, and keeps messages in order', async () => {
    const ch = new FakeChannel()
    const conn = new MessageConnection(ch, { highWaterMark: 10, sleep: never })
    ch.bufferedAmount = 11
    const first = conn.send(ping(1))
    const second = conn.send(ping(2))
    await ch.waiting
    expect(ch.sent).toHaveLength(0)
    expect(ch.waitForLowCalls).toBe(1)
    ch.drain()
    await Promise.all([first, second])
    expect(ch.sent.map((f) => f[24])).toEqual([1, 2])
  })

  test('an aborted send rejects with the reason; later sends still go out', async () => {
    const ch = new FakeChannel()
    const conn = new MessageConnection(ch, { highWaterMark: 10, sleep: never })
    ch.bufferedAmount = 11
    const ac = new AbortController()
    const reason = new Error('stop')
    const aborted = conn.send(ping(1), ac.signal)
    const next = conn.send(ping(2))
    ac.abort(reason)
    await expect(aborted).rejects.toBe(reason)
    ch.drain()
    await next
    expect(ch.sent.map((f) => f[24])).toEqual([2])
    await expect(conn.send(ping(3), AbortSignal.abort(reason))).rejects.toBe(reason)
  })

  test('counts protocol errors, then closes with the last error code', () => {
    const ch = new FakeChannel()
    const conn = new MessageConnection(ch, { maxProtocolErrors: 2 })
    const codes: string[] = []
    const closes: (Error | undefined)[] = []
    conn.onProtocolError((e) => codes.push(e.code))
    conn.onClose((r) => closes.push(r))
    expect(() => ch.deliver(Uint8Array.from([1, 2, 3]))).not.toThrow()
    expect(conn.closed).toBe(false)
    ch.deliver(new Uint8Array(0))
    expect(codes).toEqual(['ERR_WIRE_MAGIC', 'ERR_WIRE_TRUNCATED'])
    expect(conn.closed && ch.closed).toBe(true)
    expect(closes).toHaveLength(1)
    expect((closes[0] as WireProtocolError).code).toBe('ERR_WIRE_TRUNCATED')
    ch.deliver(Uint8Array.from([1]))
    expect(conn.protocolErrors).toBe(2)
  })

  test('a peer close rejects the send it interrupts and fires onClose once with the reason', async () => {
    const ch = new FakeChannel()
    const conn = new MessageConnection(ch, { highWaterMark: 10, sleep: never })
    const closes: (Error | undefined)[] = []
    conn.onClose((r) => closes.push(r))
    ch.bufferedAmount = 11
    const pending = conn.send(ping(1))
    await ch.waiting
    const reason = new Error('peer went away')
    ch.peerClosed(reason)
    ch.peerClosed(reason)
    conn.close()
    const err = await pending.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TransportError)
    expect((err as TransportError).code).toBe('ERR_CHANNEL_CLOSED')
    expect(closes).toEqual([reason])
  })

  test('a channel closed before the connection starts makes every send reject', async () => {
    const ch = new FakeChannel()
    ch.closed = true
    const conn = new MessageConnection(ch)
    expect(conn.closed).toBe(true)
    await expect(conn.send(ping(1))).rejects.toMatchObject({ code: 'ERR_CHANNEL_CLOSED' })
  })

  test('unsubscribed handlers are not called', async () => {
    const left = new FakeChannel()
    const right = new FakeChannel()
    const tx = new MessageConnection(left)
    const rx = new MessageConnection(right)
    let calls = 0
    const off = rx.onMessage(() => calls++)
    await tx.send(ping(1))
    right.deliver(left.sent[0] as Uint8Array)
    off()
    await tx.send(ping(2))
    right.deliver(left.sent[1] as Uint8Array)
    expect(calls).toBe(1)
  })
})
