import { describe, expect, it } from 'vitest'
import { MAX_CHUNK_PAYLOAD_BYTES } from '../src/wire/frame.js'
import { encodeMessage, type Message, type ReceivedMessage, type StepResult } from '../src/wire/messages.js'
import { Reassembler } from '../src/wire/reassembler.js'
import { expectWireError, firstByteMismatch, shuffled } from './wire-helpers.js'

function result(id: string, n: number, fill: number): Message & { hidden: Float32Array } {
  return { type: 'StepResult', generationId: id, stepIndex: 0, hidden: new Float32Array(n).fill(fill) }
}

describe('Reassembler', () => {
  it('rebuilds interleaved, shuffled messages from one peer', () => {
    const a = result('a', 50_000, 1.5)
    const b = result('b', 70_000, -2.25)
    const c: Message = { type: 'Ping', nonce: 4, sentAt: 5 }
    const frames = [
      ...encodeMessage(a, { messageId: 1 }),
      ...encodeMessage(b, { messageId: 2 }),
      ...encodeMessage(c, { messageId: 3 }),
    ]
    expect(frames.length).toBe(4 + 5 + 1)
    const r = new Reassembler()
    const done: ReceivedMessage[] = []
    for (const f of shuffled(frames, 7)) {
      const m = r.push(f)
      if (m !== undefined) done.push(m)
      expect(r.pendingMessages).toBeLessThanOrEqual(2)
    }
    expect(done).toHaveLength(3)
    const byId = new Map(done.map((m) => [m.type === 'StepResult' ? m.generationId : m.type, m]))
    expect(firstByteMismatch((byId.get('a') as StepResult).hidden as Float32Array, a.hidden)).toBe(-1)
    expect(firstByteMismatch((byId.get('b') as StepResult).hidden as Float32Array, b.hidden)).toBe(-1)
    expect(byId.get('Ping')).toEqual(c)
    expect(r.pendingMessages).toBe(0)
    expect(r.bufferedBytes).toBe(0)
  })

  it('accounts buffered bytes and frees them when a chunk is rejected', () => {
    const frames = encodeMessage(result('a', 50_000, 1), { messageId: 1 })
    const r = new Reassembler()
    r.push(frames[0] as Uint8Array)
    r.push(frames[2] as Uint8Array)
    expect(r.pendingMessages).toBe(1)
    expect(r.bufferedBytes).toBe(2 * MAX_CHUNK_PAYLOAD_BYTES)
    expectWireError(() => r.push(frames[2] as Uint8Array), 'ERR_WIRE_CHUNK')
    expect(r.pendingMessages).toBe(0)
    expect(r.bufferedBytes).toBe(0)
    // The message starts over cleanly afterwards.
    const got = frames.map((f) => r.push(f)).at(-1) as StepResult
    expect(got.hidden?.length).toBe(50_000)
  })

  it('keeps existing partial messages when refusing a new one', () => {
    const r = new Reassembler({ maxPending: 1 })
    const a = encodeMessage(result('a', 20_000, 3), { messageId: 1 })
    const b = encodeMessage(result('b', 20_000, 4), { messageId: 2 })
    r.push(a[0] as Uint8Array)
    expectWireError(() => r.push(b[0] as Uint8Array), 'ERR_WIRE_PENDING')
    expect((r.push(a[1] as Uint8Array) as StepResult).generationId).toBe('a')
    // Single-chunk messages never occupy a pending slot.
    r.push(b[0] as Uint8Array)
    expect(r.push(encodeMessage({ type: 'Ping', nonce: 1, sentAt: 1 })[0] as Uint8Array)?.type).toBe('Ping')
  })

  it('expires stale partial messages', () => {
    let now = 1000
    const r = new Reassembler({ timeoutMs: 500, now: () => now })
    const a = encodeMessage(result('a', 40_000, 1), { messageId: 1 })
    const b = encodeMessage(result('b', 40_000, 2), { messageId: 2 })
    r.push(a[0] as Uint8Array)
    now = 1400
    r.push(b[0] as Uint8Array)
    expect(r.pendingMessages).toBe(2)
    now = 1501
    // Pushing anything sweeps: message 1 is 501 ms old, message 2 only 101 ms.
    expect(r.push(b[1] as Uint8Array)).toBeUndefined()
    expect(r.pendingMessages).toBe(1)
    expect(r.expired).toBe(1)
    expect(r.bufferedBytes).toBe(2 * MAX_CHUNK_PAYLOAD_BYTES)
    // Late chunks of the expired message start a new partial that cannot complete.
    expect(r.push(a[1] as Uint8Array)).toBeUndefined()
    expect(r.push(a[2] as Uint8Array)).toBeUndefined()
    expect((r.push(b[2] as Uint8Array) as StepResult).generationId).toBe('b')
    now = 2100
    expect(r.expire()).toBe(1)
    expect(r.expired).toBe(2)
    expect(r.pendingMessages).toBe(0)
    expect(r.bufferedBytes).toBe(0)
  })

  it('clear() forgets everything', () => {
    const r = new Reassembler()
    r.push(encodeMessage(result('a', 40_000, 1))[0] as Uint8Array)
    r.clear()
    expect(r.pendingMessages).toBe(0)
    expect(r.bufferedBytes).toBe(0)
  })

  it('validates its options', () => {
    expectWireError(() => new Reassembler({ maxPending: -1 }), 'ERR_WIRE_OPTIONS')
    expectWireError(() => new Reassembler({ maxPending: 1.5 }), 'ERR_WIRE_OPTIONS')
    expectWireError(() => new Reassembler({ timeoutMs: 0 }), 'ERR_WIRE_OPTIONS')
    expectWireError(() => new Reassembler({ maxBufferedBytes: Number.NaN }), 'ERR_WIRE_OPTIONS')
    expectWireError(() => new Reassembler({ maxMessageBytes: 100 }), 'ERR_WIRE_OPTIONS')
    expectWireError(() => new Reassembler({ maxMessageBytes: 2 ** 40 }), 'ERR_WIRE_OPTIONS')
    expectWireError(() => new Reassembler({ now: 5 as unknown as () => number }), 'ERR_WIRE_OPTIONS')
    expect(new Reassembler({ maxMessageBytes: MAX_CHUNK_PAYLOAD_BYTES }).maxBufferedBytes).toBe(
      2 * MAX_CHUNK_PAYLOAD_BYTES,
    )
  })
})
