import {
  encodeMessage,
  MAX_CHUNK_BYTES,
  MAX_CHUNK_PAYLOAD_BYTES,
  type Message,
  MessageConnection,
  type MessageConnectionOptions,
  type StepRequest,
  type Transport,
  TransportError,
  WireProtocolError,
  type WireProtocolErrorCode,
} from '@butterfly/core'
import { describe, expect, test } from 'vitest'
import {
  bigRequest,
  collect,
  connect,
  expectClosed,
  firstMismatch,
  malformedFrames,
  nextFrame,
  recordSends,
} from './transport-compliance-helpers.js'

export interface TransportPair {
  a: Transport
  b: Transport
  cleanup(): Promise<void>
}

/**
 * What every Transport must do, run against real implementations (memory, WebRTC). Tests
 * wait on events, never on time; each has a timeout only so a hang fails instead of stalling.
 */
export function runTransportCompliance(name: string, makePair: () => Promise<TransportPair>): void {
  const withPair = (fn: (pair: TransportPair) => Promise<void>) => async () => {
    const pair = await makePair()
    try {
      await fn(pair)
    } finally {
      await pair.cleanup()
    }
  }

  describe(`transport compliance: ${name}`, () => {
    test(
      'dials a peer, which sees the channel arrive; frames flow both ways as copies',
      withPair(async ({ a, b }) => {
        const { ab, ba, from } = await connect(a, b)
        expect(from).toBe(a.peerId)
        expect(ab.closed).toBe(false)
        expect(ba.closed).toBe(false)
        const got = nextFrame(ba)
        const sent = Uint8Array.from([1, 2, 3, 250])
        ab.send(sent)
        sent.fill(0)
        expect(Array.from(await got)).toEqual([1, 2, 3, 250])
        const back = nextFrame(ab)
        ba.send(Uint8Array.from([9]))
        expect(Array.from(await back)).toEqual([9])
      }),
      15_000,
    )

    test(
      'delivers many messages, small and chunked, in send order',
      withPair(async ({ a, b }) => {
        const { ab, ba } = await connect(a, b)
        const tx = new MessageConnection(ab)
        const rx = new MessageConnection(ba)
        const count = 400
        const received = collect(rx, count)
        const sends: Promise<void>[] = []
        for (let i = 0; i < count; i++) {
          // Every tenth message spans 3 chunks, so chunked and single-frame messages interleave.
          const msg: Message =
            i % 10 === 0
              ? {
                  type: 'StepResult',
                  generationId: `g${i}`,
                  stepIndex: i,
                  hidden: new Float32Array(40_000).fill(i),
                }
              : { type: 'Ping', nonce: i, sentAt: i }
          sends.push(tx.send(msg))
        }
        await Promise.all(sends)
        const msgs = await received
        const order = msgs.map((m) =>
          m.type === 'Ping' ? m.nonce : m.type === 'StepResult' ? m.stepIndex : -1,
        )
        expect(order).toEqual(Array.from({ length: count }, (_, i) => i))
        const big = msgs[10]
        expect(big?.type === 'StepResult' && big.hidden?.length === 40_000 && big.hidden[39_999] === 10).toBe(
          true,
        )
      }),
      15_000,
    )

    test(
      'carries a 5 MB message intact, as frames of at most 64 KiB',
      withPair(async ({ a, b }) => {
        const { ab, ba } = await connect(a, b)
        const sent = recordSends(ab)
        const arrived: number[] = []
        ba.onFrame((f) => arrived.push(f.length))
        const tx = new MessageConnection(sent.channel)
        const rx = new MessageConnection(ba)
        const msg = bigRequest(320, 4096)
        const bodyBytes = (msg.hidden as Float32Array).byteLength
        expect(bodyBytes).toBeGreaterThan(5_000_000)
        const received = collect(rx, 1)
        await tx.send(msg)
        const [got] = await received
        expect(got?.type).toBe('StepRequest')
        const hidden = (got as StepRequest).hidden as Float32Array
        expect(hidden.length).toBe((msg.hidden as Float32Array).length)
        expect(firstMismatch(hidden, msg.hidden as Float32Array)).toBe(-1)
        const minFrames = Math.ceil(bodyBytes / MAX_CHUNK_PAYLOAD_BYTES)
        expect(sent.sizes.length).toBeGreaterThanOrEqual(minFrames)
        expect(Math.max(...sent.sizes)).toBeLessThanOrEqual(MAX_CHUNK_BYTES)
        expect(arrived.length).toBe(sent.sizes.length)
        expect(Math.max(...arrived)).toBeLessThanOrEqual(MAX_CHUNK_BYTES)
      }),
      30_000,
    )

    test(
      'backpressure keeps bufferedAmount within one frame of the high-water mark',
      withPair(async ({ a, b }) => {
        const { ab, ba } = await connect(a, b)
        const highWaterMark = 256 * 1024
        const sent = recordSends(ab)
        const tx = new MessageConnection(sent.channel, { highWaterMark })
        const rx = new MessageConnection(ba)
        const received = collect(rx, 2)
        // 2 × 4 MiB, sent back to back: far more than the channel can hold at once.
        await Promise.all([tx.send(bigRequest(256, 4096, 1)), tx.send(bigRequest(256, 4096, 2))])
        const msgs = await received
        expect(msgs.map((m) => (m as StepRequest).stepIndex)).toEqual([1, 2])
        const worst = Math.max(...sent.bufferedAfter)
        expect(worst).toBeLessThanOrEqual(highWaterMark + MAX_CHUNK_BYTES)
        // The queue did fill past the mark, so the bound above was actually exercised.
        expect(worst).toBeGreaterThan(highWaterMark)
      }),
      30_000,
    )

    test(
      'reports malformed frames from the peer instead of throwing, and keeps going',
      withPair(async ({ a, b }) => {
        const { ab, ba } = await connect(a, b)
        const rx = new MessageConnection(ba, { maxProtocolErrors: 100 })
        const codes: WireProtocolErrorCode[] = []
        rx.onProtocolError((err) => {
          expect(err).toBeInstanceOf(WireProtocolError)
          codes.push(err.code)
        })
        const cases = malformedFrames()
        for (const c of cases) ab.send(c.bytes)
        const received = collect(rx, 1)
        for (const f of encodeMessage({ type: 'Ping', nonce: 7, sentAt: 1 })) ab.send(f)
        const [ping] = await received
        expect(ping).toMatchObject({ type: 'Ping', nonce: 7 })
        expect(codes).toEqual(cases.map((c) => c.code))
        expect(rx.protocolErrors).toBe(cases.length)
        expect(rx.closed).toBe(false)
      }),
      15_000,
    )

    test(
      'closes itself after too many protocol errors, and the peer sees the close',
      withPair(async ({ a, b }) => {
        const { ab, ba } = await connect(a, b)
        const rx = new MessageConnection(ba, { maxProtocolErrors: 3 })
        const rxClosed = new Promise<Error | undefined>((r) => rx.onClose(r))
        const txClosed = new Promise<void>((r) => ab.onClose(() => r()))
        for (let i = 0; i < 5; i++) ab.send(Uint8Array.from([0xde, 0xad, i]))
        const reason = await rxClosed
        expect(reason).toBeInstanceOf(WireProtocolError)
        expect((reason as WireProtocolError).code).toBe('ERR_WIRE_MAGIC')
        expect(rx.protocolErrors).toBe(3)
        await txClosed
        expect(ab.closed).toBe(true)
      }),
      15_000,
    )

    test(
      'close on one side reaches the other',
      withPair(async ({ a, b }) => {
        const { ab, ba } = await connect(a, b)
        const left = new MessageConnection(ab)
        const right = new MessageConnection(ba)
        const rightClosed = new Promise<void>((r) => right.onClose(() => r()))
        const leftClosed = new Promise<Error | undefined>((r) => left.onClose(r))
        left.close()
        expect(await leftClosed).toBeUndefined()
        await rightClosed
        expect(left.closed && right.closed && ab.closed && ba.closed).toBe(true)
      }),
      15_000,
    )

    test(
      'closing a transport closes its channels',
      withPair(async ({ a, b }) => {
        const { ba } = await connect(a, b)
        const closed = new Promise<void>((r) => ba.onClose(() => r()))
        await a.close()
        await closed
        expect(ba.closed).toBe(true)
        await expect(a.dial(b.peerId)).rejects.toMatchObject({
          name: 'TransportError',
          code: 'ERR_DIAL_FAILED',
        })
      }),
      15_000,
    )

    test(
      'dial rejects with the abort reason, and a later dial still works',
      withPair(async ({ a, b }) => {
        const reason = new Error('changed my mind')
        await expect(a.dial(b.peerId, AbortSignal.abort(reason))).rejects.toBe(reason)
        const ac = new AbortController()
        const pending = a.dial(b.peerId, ac.signal)
        ac.abort(reason)
        await expect(pending).rejects.toBe(reason)
        const { ab } = await connect(a, b)
        expect(ab.closed).toBe(false)
      }),
      15_000,
    )

    test(
      'sending on a closed connection rejects with ERR_CHANNEL_CLOSED',
      withPair(async ({ a, b }) => {
        const { ab, ba } = await connect(a, b)
        const left = new MessageConnection(ab)
        const right = new MessageConnection(ba)
        const rightClosed = new Promise<void>((r) => right.onClose(() => r()))
        const ping: Message = { type: 'Ping', nonce: 1, sentAt: 0 }
        left.close()
        await expectClosed(left.send(ping))
        expect(() => ab.send(Uint8Array.from([1]))).toThrow(TransportError)
        await rightClosed
        await expectClosed(right.send(ping))
      }),
      15_000,
    )

    test(
      'a send waiting on backpressure rejects with ERR_CHANNEL_CLOSED when the channel closes',
      withPair(async ({ a, b }) => {
        const { ab } = await connect(a, b)
        const sent = recordSends(ab)
        const tx = new MessageConnection(sent.channel, {
          highWaterMark: 64 * 1024,
        } satisfies MessageConnectionOptions)
        const sending = tx.send(bigRequest(256, 4096))
        await sent.firstSend
        tx.close()
        await expectClosed(sending)
        expect(sent.sizes.length).toBeLessThan(Math.ceil((256 * 4096 * 4) / MAX_CHUNK_PAYLOAD_BYTES))
      }),
      15_000,
    )
  })
}
