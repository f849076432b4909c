import { describe, expect, it } from 'vitest'
import {
  decodeFrame,
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameType,
  MAX_CHUNK_BYTES,
  MAX_CHUNK_PAYLOAD_BYTES,
  WIRE_VERSION,
} from '../src/wire/frame.js'
import { expectWireError, firstByteMismatch, patched } from './wire-helpers.js'

describe('wire frames', () => {
  it('lays out the header as documented, little-endian', () => {
    const payload = Uint8Array.from([9, 8, 7])
    const frame = encodeFrame({
      type: FrameType.StepResult,
      messageId: 0x01020304,
      chunkIndex: 5,
      chunkCount: 6,
      payload,
    })
    expect(frame.length).toBe(FRAME_HEADER_BYTES + 3)
    expect(Array.from(frame.subarray(0, 8))).toEqual([
      0xbf,
      0x01,
      WIRE_VERSION,
      FrameType.StepResult,
      0,
      0,
      0,
      0,
    ])
    expect(Array.from(frame.subarray(8, 12))).toEqual([4, 3, 2, 1])
    const dv = new DataView(frame.buffer)
    expect(dv.getUint32(12, true)).toBe(5)
    expect(dv.getUint32(16, true)).toBe(6)
    expect(dv.getUint32(20, true)).toBe(3)
    expect(Array.from(frame.subarray(24))).toEqual([9, 8, 7])
  })

  it('round-trips and decodes the payload as a view, from bytes or an ArrayBuffer', () => {
    const payload = new Uint8Array(MAX_CHUNK_PAYLOAD_BYTES).map((_, i) => i * 31)
    const frame = encodeFrame({
      type: FrameType.Ping,
      messageId: 0xffffffff,
      chunkIndex: 0,
      chunkCount: 1,
      payload,
    })
    expect(frame.length).toBe(MAX_CHUNK_BYTES)
    for (const input of [frame, frame.buffer as ArrayBuffer]) {
      const decoded = decodeFrame(input)
      expect(decoded.type).toBe(FrameType.Ping)
      expect(decoded.messageId).toBe(0xffffffff)
      expect(decoded.chunkIndex).toBe(0)
      expect(decoded.chunkCount).toBe(1)
      expect(decoded.payload.buffer).toBe(frame.buffer)
      expect(decoded.payload.byteOffset).toBe(FRAME_HEADER_BYTES)
      expect(firstByteMismatch(decoded.payload, payload)).toBe(-1)
    }
  })

  it('decodes a frame that sits at an offset inside a larger buffer', () => {
    const frame = encodeFrame({
      type: FrameType.Pong,
      messageId: 7,
      chunkIndex: 1,
      chunkCount: 3,
      payload: Uint8Array.of(42),
    })
    const big = new Uint8Array(frame.length + 13)
    big.set(frame, 5)
    const decoded = decodeFrame(big.subarray(5, 5 + frame.length))
    expect(decoded.messageId).toBe(7)
    expect(decoded.chunkIndex).toBe(1)
    expect(Array.from(decoded.payload)).toEqual([42])
  })

  it('names both versions when a peer speaks another protocol version', () => {
    const frame = encodeFrame({
      type: FrameType.Ping,
      messageId: 1,
      chunkIndex: 0,
      chunkCount: 1,
      payload: Uint8Array.of(1),
    })
    const err = expectWireError(
      () => decodeFrame(patched(frame, (dv) => dv.setUint8(2, 2))),
      'ERR_WIRE_VERSION',
    )
    expect(err.message).toMatch(/version 2/)
    expect(err.message).toMatch(/version 1/)
  })

  it('refuses to encode invalid frames', () => {
    const ok = {
      type: FrameType.Ping,
      messageId: 1,
      chunkIndex: 0,
      chunkCount: 1,
      payload: Uint8Array.of(1),
    } as const
    expectWireError(
      () => encodeFrame({ ...ok, payload: new Uint8Array(MAX_CHUNK_PAYLOAD_BYTES + 1) }),
      'ERR_WIRE_TOO_LARGE',
    )
    expectWireError(() => encodeFrame({ ...ok, payload: new Uint8Array(0) }), 'ERR_WIRE_CHUNK')
    expectWireError(() => encodeFrame({ ...ok, chunkIndex: 1 }), 'ERR_WIRE_CHUNK')
    expectWireError(() => encodeFrame({ ...ok, chunkCount: 0 }), 'ERR_WIRE_CHUNK')
    expectWireError(() => encodeFrame({ ...ok, chunkIndex: -1 }), 'ERR_WIRE_CHUNK')
    expectWireError(() => encodeFrame({ ...ok, messageId: 2 ** 32 }), 'ERR_WIRE_CHUNK')
    expectWireError(() => encodeFrame({ ...ok, type: 0 as FrameType }), 'ERR_WIRE_TYPE')
    expectWireError(() => encodeFrame({ ...ok, type: 11 as FrameType }), 'ERR_WIRE_TYPE')
  })
})
