import { runTransportCompliance } from '@butterfly/testing'
import { describe, expect, test } from 'vitest'
import { TransportError } from '../src/errors.js'
import {
  createMemoryTransport,
  MemoryNetwork,
  MemorySignalingHub,
} from '../src/transport/memory-transport.js'
import type { FrameChannel, SignalData } from '../src/transport/transport.js'
import { MAX_CHUNK_BYTES } from '../src/wire/frame.js'

async function pair(network = new MemoryNetwork()) {
  const a = createMemoryTransport({ peerId: 'alice' }, { network })
  const b = createMemoryTransport({ peerId: 'bob' }, { network })
  return {
    a,
    b,
    network,
    async cleanup() {
      await a.close()
      await b.close()
    },
  }
}

runTransportCompliance('memory', () => pair())
// Frames at the channel's size limit and a slow drain: backpressure waits on nearly every frame.
runTransportCompliance('memory, 64 KiB messages, slow drain', () =>
  pair(
    new MemoryNetwork({
      maxMessageBytes: MAX_CHUNK_BYTES,
      drainBytesPerTick: 64 * 1024,
      bufferedAmountLowThreshold: 0,
    }),
  ),
)

async function connected(
  network?: MemoryNetwork,
): Promise<{ ab: FrameChannel; ba: FrameChannel; cleanup(): Promise<void> }> {
  const { a, b, cleanup } = await pair(network)
  const incoming = new Promise<FrameChannel>((r) => b.onIncoming((_, ch) => r(ch)))
  const ab = await a.dial('bob')
  return { ab, ba: await incoming, cleanup }
}

describe('memory transport', () => {
  test('delivers asynchronously, never inside send()', async () => {
    const { ab, ba, cleanup } = await connected()
    const got: number[] = []
    const done = new Promise<void>((r) =>
      ba.onFrame((f) => {
        got.push(f[0] as number)
        if (got.length === 3) r()
      }),
    )
    for (const v of [1, 2, 3]) ab.send(Uint8Array.from([v]))
    expect(got).toEqual([])
    expect(ab.bufferedAmount).toBe(3)
    await done
    expect(got).toEqual([1, 2, 3])
    expect(ab.bufferedAmount).toBe(0)
    await cleanup()
  })

  test('holds frames sent before the receiver listens, then delivers them in order', async () => {
    const { ab, ba, cleanup } = await connected(new MemoryNetwork({ bufferedAmountLowThreshold: 0 }))
    ab.send(Uint8Array.from([1]))
    ab.send(Uint8Array.from([2]))
    await ab.waitForLow?.()
    expect(ab.bufferedAmount).toBe(0)
    const got: number[] = []
    await new Promise<void>((r) =>
      ba.onFrame((f) => {
        got.push(f[0] as number)
        if (got.length === 2) r()
      }),
    )
    expect(got).toEqual([1, 2])
    await cleanup()
  })

  test('an oversized frame closes the channel on both sides, like a real data channel', async () => {
    const { ab, ba, cleanup } = await connected(new MemoryNetwork({ maxMessageBytes: 1000 }))
    const remoteClosed = new Promise<Error | undefined>((r) => ba.onClose(r))
    ab.send(new Uint8Array(1000))
    let thrown: unknown
    try {
      ab.send(new Uint8Array(1001))
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(TransportError)
    expect((thrown as TransportError).code).toBe('ERR_CHANNEL_CLOSED')
    expect(ab.closed).toBe(true)
    expect((await remoteClosed)?.message).toMatch(/1001 bytes/)
    await cleanup()
  })

  test.each([
    ['an unknown peer', 'carol'],
    ['itself', 'alice'],
  ])('dialing %s fails with ERR_DIAL_FAILED', async (_, to) => {
    const { a, cleanup } = await pair()
    await expect(a.dial(to)).rejects.toMatchObject({ name: 'TransportError', code: 'ERR_DIAL_FAILED' })
    await cleanup()
  })

  test('rejects a duplicate or invalid peer id and bad network options', () => {
    const network = new MemoryNetwork()
    createMemoryTransport({ peerId: 'x' }, { network })
    for (const peerId of ['x', '', 'y'.repeat(65)]) {
      expect(() => createMemoryTransport({ peerId }, { network })).toThrow(TransportError)
    }
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => new MemoryNetwork({ drainBytesPerTick: bad })).toThrow(TransportError)
    }
    expect(network.peerIds).toEqual(['x'])
  })
})

describe('memory signaling hub', () => {
  test('relays JSON copies asynchronously to the named peer only', async () => {
    const hub = new MemorySignalingHub()
    const a = hub.connect('a')
    const b = hub.connect('b')
    const c = hub.connect('c')
    const seenByC: unknown[] = []
    c.onSignal((from, data) => seenByC.push([from, data]))
    const data = { type: 'offer', sdp: 'v=0', nested: { n: 1 } }
    const got = new Promise<[string, SignalData]>((r) => b.onSignal((from, d) => r([from, d])))
    a.send('b', data)
    data.nested.n = 2
    const [from, received] = await got
    expect(from).toBe('a')
    expect(received).toEqual({ type: 'offer', sdp: 'v=0', nested: { n: 1 } })
    expect(seenByC).toEqual([])
  })

  test('refuses data that is not JSON', () => {
    const a = new MemorySignalingHub().connect('a')
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(() => a.send('b', cyclic)).toThrow(TransportError)
  })
})
