import { describe, expect, it } from 'vitest'
import { encodeFrame, FRAME_HEADER_BYTES, FrameFlag, FrameType } from '../src/wire/frame.js'
import {
  decodeMessageBody,
  encodeMessage,
  MAX_FINGERPRINT_BYTES,
  type Message,
  type StepResult,
} from '../src/wire/messages.js'
import { Reassembler } from '../src/wire/reassembler.js'
import { expectWireError, firstByteMismatch, patched, RawBody } from './wire-helpers.js'

const signature = Uint8Array.from({ length: 64 }, (_, i) => 255 - i)
const fingerprint = Uint8Array.from({ length: 37 }, (_, i) => i * 7)

function deliver(frames: Uint8Array[]): StepResult {
  const r = new Reassembler()
  let out: unknown
  for (const f of frames) out = r.push(f)
  return out as StepResult
}

/** A top-k StepResult body followed by the raw extension section `ext`. */
function topkBodyWith(ext: number[]): Uint8Array {
  return new RawBody().id('g1').u32(0).u32(0).u32(1).f64(2).f32(1).i32(3).raw(ext).build()
}

/** The extension header: u8 parts, then the fingerprint length as u8 high byte and u16 low half. */
function ext(parts: number, fpLength: number): RawBody {
  return new RawBody()
    .u8(parts)
    .u8(fpLength >>> 16)
    .u16(fpLength & 0xffff)
}

function flagged(
  body: Uint8Array,
  type: FrameType = FrameType.StepResult,
  flags: number = FrameFlag.Extensions,
) {
  // encodeFrame refuses flags on other types, so those frames are patched after encoding.
  const frame = encodeFrame({
    type: FrameType.StepResult,
    messageId: 1,
    chunkIndex: 0,
    chunkCount: 1,
    payload: body,
  })
  return patched(frame, (dv) => {
    dv.setUint8(3, type)
    dv.setUint8(4, flags)
  })
}

describe('StepResult signature and fingerprint', () => {
  const cases: Array<[string, StepResult]> = [
    [
      'hidden + signature',
      { type: 'StepResult', generationId: 'g', stepIndex: 3, hidden: Float32Array.from([1, -2]), signature },
    ],
    [
      'top-k + fingerprint',
      {
        type: 'StepResult',
        generationId: 'g',
        stepIndex: 3,
        topk: { values: Float32Array.from([2, 1]), ids: Int32Array.from([5, 6]), logSumExp: 2.5 },
        fingerprint,
      },
    ],
    [
      'hidden + both',
      {
        type: 'StepResult',
        generationId: 'g',
        stepIndex: 3,
        hidden: Float32Array.from([0.25]),
        signature,
        fingerprint: new Uint8Array(MAX_FINGERPRINT_BYTES).fill(9),
      },
    ],
    [
      'hidden + a fingerprint of exactly 64 KiB (the length needs its high byte)',
      {
        type: 'StepResult',
        generationId: 'g',
        stepIndex: 3,
        hidden: Float32Array.from([0.25]),
        fingerprint: Uint8Array.from({ length: 0x10000 }, (_, i) => i & 0xff),
      },
    ],
  ]

  it('caps fingerprints at a full 512-row window of the largest rows (20 + 512 x 456 bytes)', () => {
    expect(MAX_FINGERPRINT_BYTES).toBe(20 + 512 * (8 + 6 * 64 + 4 * 16))
    expect(MAX_FINGERPRINT_BYTES).toBe(233_492)
  })

  it('writes a fingerprint over 64 KiB with its length high byte', () => {
    const msg: Message = {
      type: 'StepResult',
      generationId: 'g1',
      stepIndex: 0,
      topk: { values: Float32Array.of(1), ids: Int32Array.of(3), logSumExp: 2 },
      fingerprint: new Uint8Array(0x12345).fill(4),
    }
    const frames = encodeMessage(msg, { messageId: 1 })
    const head = frames[0]?.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + 40) as Uint8Array
    const expected = topkBodyWith([...ext(2, 0x12345).build()])
    expect(firstByteMismatch(head.subarray(0, expected.length), expected)).toBe(-1)
    expect(Array.from(expected.subarray(expected.length - 4))).toEqual([2, 0x01, 0x45, 0x23])
    expect(deliver(frames).fingerprint?.length).toBe(0x12345)
  })

  it.each(cases)('%s round-trips with the extensions flag on every frame', (_, msg) => {
    // Tiny frames for small messages; a large fingerprint in 4 KiB frames (the reassembler caps chunk counts).
    const small = (msg.fingerprint?.length ?? 0) > 4096 ? 4096 : 40
    for (const maxChunkBytes of [undefined, FRAME_HEADER_BYTES + small]) {
      const frames = encodeMessage(msg, maxChunkBytes === undefined ? {} : { maxChunkBytes })
      for (const f of frames) expect(f[4]).toBe(FrameFlag.Extensions)
      const got = deliver(frames)
      expect(got.signature === undefined).toBe(msg.signature === undefined)
      expect(got.fingerprint === undefined).toBe(msg.fingerprint === undefined)
      if (msg.signature) expect(firstByteMismatch(got.signature as Uint8Array, msg.signature)).toBe(-1)
      if (msg.fingerprint) expect(firstByteMismatch(got.fingerprint as Uint8Array, msg.fingerprint)).toBe(-1)
      if (msg.hidden) expect(firstByteMismatch(got.hidden as Float32Array, msg.hidden)).toBe(-1)
      if (msg.topk) expect(Array.from(got.topk?.ids ?? [])).toEqual(Array.from(msg.topk.ids))
    }
  })

  it('leaves unsigned results byte-for-byte as version 1 always sent them', () => {
    const msg: Message = {
      type: 'StepResult',
      generationId: 'g1',
      stepIndex: 0,
      topk: { values: Float32Array.of(1), ids: Int32Array.of(3), logSumExp: 2 },
    }
    const [frame] = encodeMessage(msg, { messageId: 1 })
    expect(frame?.[4]).toBe(0)
    const body = new RawBody().id('g1').u32(0).u32(0).u32(1).f64(2).f32(1).i32(3).build()
    expect(firstByteMismatch(frame?.subarray(FRAME_HEADER_BYTES) as Uint8Array, body)).toBe(-1)
    const got = deliver([frame as Uint8Array])
    expect('signature' in got || 'fingerprint' in got).toBe(false)
  })

  it('writes the documented extension layout', () => {
    const msg: Message = {
      type: 'StepResult',
      generationId: 'g1',
      stepIndex: 0,
      topk: { values: Float32Array.of(1), ids: Int32Array.of(3), logSumExp: 2 },
      signature,
      fingerprint: Uint8Array.of(7, 8, 9),
    }
    const [frame] = encodeMessage(msg, { messageId: 1 })
    const body = topkBodyWith([...ext(3, 3).build(), ...signature, 7, 8, 9])
    expect(firstByteMismatch(frame?.subarray(FRAME_HEADER_BYTES) as Uint8Array, body)).toBe(-1)
  })

  const badOnSend: Array<[string, Record<string, unknown>]> = [
    ['a 63-byte signature', { signature: new Uint8Array(63) }],
    ['a 65-byte signature', { signature: new Uint8Array(65) }],
    ['a signature that is an array', { signature: Array(64).fill(0) }],
    ['an empty fingerprint', { fingerprint: new Uint8Array(0) }],
    ['a fingerprint over the cap', { fingerprint: new Uint8Array(MAX_FINGERPRINT_BYTES + 1) }],
    ['a fingerprint that is a string', { fingerprint: 'abc' }],
  ]
  it.each(badOnSend)('refuses to send %s', (_, over) => {
    const msg = { type: 'StepResult', generationId: 'g', stepIndex: 0, hidden: Float32Array.of(1), ...over }
    expectWireError(() => encodeMessage(msg as Message), 'ERR_WIRE_PAYLOAD')
  })

  const sig = Array.from(signature)
  const badOnReceive: Array<[string, () => Uint8Array, 'ERR_WIRE_PAYLOAD' | 'ERR_WIRE_FLAGS']> = [
    [
      'a signature cut short',
      () => flagged(topkBodyWith([...ext(1, 0).build(), ...sig.slice(0, 63)])),
      'ERR_WIRE_PAYLOAD',
    ],
    ['the flag with no section', () => flagged(topkBodyWith([])), 'ERR_WIRE_PAYLOAD'],
    ['an empty section', () => flagged(topkBodyWith([...ext(0, 0).build()])), 'ERR_WIRE_PAYLOAD'],
    [
      'unknown section parts',
      () => flagged(topkBodyWith([...ext(5, 0).build(), ...sig])),
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'a length high byte with no fingerprint',
      () => flagged(topkBodyWith([...new RawBody().u8(1).u8(1).u16(0).build(), ...sig])),
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'a fingerprint length with no fingerprint',
      () => flagged(topkBodyWith([...ext(1, 4).build(), ...sig, 1, 2, 3, 4])),
      'ERR_WIRE_PAYLOAD',
    ],
    ['a fingerprint of length 0', () => flagged(topkBodyWith([...ext(2, 0).build()])), 'ERR_WIRE_PAYLOAD'],
    [
      'a fingerprint longer than the body',
      () => flagged(topkBodyWith([...ext(2, 9).build(), 1, 2])),
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'bytes after the section',
      () => flagged(topkBodyWith([...ext(1, 0).build(), ...sig, 0])),
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'a section without the flag',
      () => flagged(topkBodyWith([...ext(1, 0).build(), ...sig]), FrameType.StepResult, 0),
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'the flag on a Ping',
      () => flagged(new RawBody().u32(1).f64(2).build(), FrameType.Ping),
      'ERR_WIRE_FLAGS',
    ],
    [
      'the flag on an EndGeneration',
      () => flagged(new RawBody().id('g1').build(), FrameType.EndGeneration),
      'ERR_WIRE_FLAGS',
    ],
    // 0x02 is FrameFlag.HiddenDtype now; 0x04 is still unknown.
    ['an unknown flag bit', () => flagged(topkBodyWith([]), FrameType.StepResult, 0x04), 'ERR_WIRE_FLAGS'],
  ]
  it.each(badOnReceive)('refuses %s on receipt', (_, frame, code) => {
    expectWireError(() => new Reassembler().push(frame()), code)
  })

  it('refuses a fingerprint over the cap on receipt, however it is chunked', () => {
    const body = topkBodyWith([
      ...ext(2, MAX_FINGERPRINT_BYTES + 1).build(),
      ...new Uint8Array(MAX_FINGERPRINT_BYTES + 1),
    ])
    const size = 60_000
    const chunkCount = Math.ceil(body.length / size)
    const r = new Reassembler()
    expectWireError(() => {
      for (let i = 0; i < chunkCount; i++) {
        r.push(
          encodeFrame({
            type: FrameType.StepResult,
            flags: FrameFlag.Extensions,
            messageId: 9,
            chunkIndex: i,
            chunkCount,
            payload: body.subarray(i * size, (i + 1) * size),
          }),
        )
      }
    }, 'ERR_WIRE_PAYLOAD')
  })

  it('refuses a message whose chunks disagree on the flags', () => {
    const msg: Message = {
      type: 'StepResult',
      generationId: 'g',
      stepIndex: 0,
      hidden: new Float32Array(100),
      signature,
    }
    const frames = encodeMessage(msg, { maxChunkBytes: FRAME_HEADER_BYTES + 64, messageId: 4 })
    expect(frames.length).toBeGreaterThan(2)
    const r = new Reassembler()
    expect(r.push(frames[0] as Uint8Array)).toBeUndefined()
    expectWireError(
      () => r.push(patched(frames[1] as Uint8Array, (dv) => dv.setUint8(4, 0))),
      'ERR_WIRE_CHUNK',
    )
    expect(r.pendingMessages).toBe(0)
  })

  it('decodeMessageBody refuses flags on other message types', () => {
    expectWireError(
      () => decodeMessageBody(FrameType.Ping, new RawBody().u32(1).f64(2).build(), 1),
      'ERR_WIRE_FLAGS',
    )
    expectWireError(
      () =>
        encodeFrame({
          type: FrameType.Pong,
          messageId: 1,
          chunkIndex: 0,
          chunkCount: 1,
          flags: 1,
          payload: Uint8Array.of(1),
        }),
      'ERR_WIRE_FLAGS',
    )
  })

  it('copies signature and fingerprint out of the received bytes', () => {
    const msg: Message = {
      type: 'StepResult',
      generationId: 'g',
      stepIndex: 0,
      hidden: Float32Array.of(1),
      signature,
      fingerprint,
    }
    const [frame] = encodeMessage(msg)
    const got = deliver([frame as Uint8Array])
    ;(frame as Uint8Array).fill(0)
    expect(firstByteMismatch(got.signature as Uint8Array, signature)).toBe(-1)
    expect(firstByteMismatch(got.fingerprint as Uint8Array, fingerprint)).toBe(-1)
  })
})
