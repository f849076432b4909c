import { describe, expect, it } from 'vitest'
import type { WireProtocolErrorCode } from '../src/errors.js'
import { f32ToF16Bits } from '../src/weights/float16.js'
import { encodeFrame, FrameFlag, FrameType } from '../src/wire/frame.js'
import { roundToFp16, valuesToFp16 } from '../src/wire/hidden-dtype.js'
import { encodeMessage, type Message, type StepRequest, type StepResult } from '../src/wire/messages.js'
import { Reassembler } from '../src/wire/reassembler.js'
import { expectWireError, firstByteMismatch, RawBody } from './wire-helpers.js'

// Hidden states as fp16 on the wire: the layout, the round trip, fp32 left as it was, and a table
// of malformed fp16 bodies a hostile peer could send.

const HD = FrameFlag.HiddenDtype

function deliver(frames: Uint8Array[]): Message {
  const r = new Reassembler()
  let out: unknown
  for (const f of frames) out = r.push(f)
  return out as Message
}

function frame(type: FrameType, body: Uint8Array, flags: number): Uint8Array {
  return encodeFrame({ type, messageId: 1, chunkIndex: 0, chunkCount: 1, flags, payload: body })
}

/** A StepRequest body for 1 position of `count` hidden values, with the tag word and raw fp16 bits. */
function requestBody(tag: number, bits: number[], count = bits.length, pad = 0): Uint8Array {
  const b = new RawBody().id('g1').u32(0).u32(0).u32(1).f32(0).u32(1000).u32(0).u32(count).u32(tag)
  for (const h of bits) b.u16(h)
  return b.pad4(pad).build()
}

/** A StepResult body with the tag word, hidden as raw fp16 bits and no top-k. */
function resultBody(tag: number, bits: number[]): Uint8Array {
  const b = new RawBody().id('g1').u32(0).u32(bits.length).u32(0).u32(tag).f64(0)
  for (const h of bits) b.u16(h)
  return b.pad4().build()
}

const one = f32ToF16Bits(1)
const values = Float32Array.of(1, -2.5, 0.099975586, 65504, -0, 2 ** -24, 3.140625)

describe('fp16 hidden states on the wire', () => {
  it('a StepRequest body follows the documented layout and round-trips exactly', () => {
    const msg: StepRequest = {
      type: 'StepRequest',
      generationId: 'g1',
      stepIndex: 0,
      startPos: 0,
      seqLen: 1,
      temperature: 0,
      deadlineMs: 1000,
      hidden: values,
      hiddenDtype: 'fp16',
    }
    const frames = encodeMessage(msg, { messageId: 1 })
    const bits = Array.from(values, (v) => f32ToF16Bits(v))
    expect(
      firstByteMismatch(frames[0] as Uint8Array, frame(FrameType.StepRequest, requestBody(1, bits), HD)),
    ).toBe(-1)
    const got = deliver(frames) as StepRequest
    expect(got.hiddenDtype).toBe('fp16')
    expect(firstByteMismatch(got.hidden as Float32Array, values)).toBe(-1)
  })

  it('a StepResult with a challenge-free fp16 hidden, and a StepRequest of tokens asking for fp16', () => {
    const result: StepResult = {
      type: 'StepResult',
      generationId: 'g1',
      stepIndex: 0,
      hidden: values,
      hiddenDtype: 'fp16',
    }
    const bits = Array.from(values, (v) => f32ToF16Bits(v))
    const frames = encodeMessage(result, { messageId: 1 })
    expect(
      firstByteMismatch(frames[0] as Uint8Array, frame(FrameType.StepResult, resultBody(1, bits), HD)),
    ).toBe(-1)
    const back = deliver(frames) as StepResult
    expect(back.hiddenDtype).toBe('fp16')
    expect(Array.from(back.hidden ?? [])).toEqual(Array.from(values))
    const ask = deliver(
      encodeMessage({
        type: 'StepRequest',
        generationId: 'g1',
        stepIndex: 0,
        startPos: 0,
        seqLen: 2,
        temperature: 0,
        deadlineMs: 0,
        tokens: Int32Array.of(5, 6),
        hiddenDtype: 'fp16',
        fingerprintChallenge: 9,
      }),
    ) as StepRequest
    expect([ask.hiddenDtype, Array.from(ask.tokens ?? []), ask.fingerprintChallenge]).toEqual([
      'fp16',
      [5, 6],
      9,
    ])
  })

  it('fp32 stays byte-identical: no flag, no tag, whether hiddenDtype is absent or fp32', () => {
    const base: StepResult = { type: 'StepResult', generationId: 'g1', stepIndex: 3, hidden: values }
    const plain = encodeMessage(base, { messageId: 5 })
    const explicit = encodeMessage({ ...base, hiddenDtype: 'fp32' }, { messageId: 5 })
    expect(plain.length).toBe(1)
    expect(firstByteMismatch(plain[0] as Uint8Array, explicit[0] as Uint8Array)).toBe(-1)
    expect((plain[0] as Uint8Array)[4]).toBe(0)
    expect((deliver(plain) as StepResult).hiddenDtype).toBeUndefined()
  })

  it('a prefill-sized fp16 state round-trips across many chunks, an odd count split mid-value', () => {
    const hidden = roundToFp16(Float32Array.from({ length: 3 * 40_001 }, (_, i) => Math.sin(i) * 100))
    const frames = encodeMessage(
      {
        type: 'StepResult',
        generationId: 'g1',
        stepIndex: 0,
        hidden,
        hiddenDtype: 'fp16',
        signature: new Uint8Array(64),
      },
      { maxChunkBytes: 1001 },
    )
    expect(frames.length).toBeGreaterThan(200)
    for (const f of frames) expect(f[4]).toBe(FrameFlag.HiddenDtype | FrameFlag.Extensions)
    const back = deliver(frames) as StepResult
    expect(firstByteMismatch(back.hidden as Float32Array, hidden)).toBe(-1)
    expect(back.signature?.length).toBe(64)
  })

  it('a 768-wide decode state takes half the bytes of fp32, plus the tag', () => {
    const hidden = roundToFp16(Float32Array.from({ length: 768 }, (_, i) => Math.sin(i)))
    const msg = { type: 'StepResult', generationId: 'g1', stepIndex: 0, hidden } as const
    const f32 = encodeMessage(msg)[0] as Uint8Array
    const f16 = encodeMessage({ ...msg, hiddenDtype: 'fp16' })[0] as Uint8Array
    expect(f32.length - f16.length).toBe(768 * 2 - 4)
  })

  it('roundToFp16 is within 2^-11 relative per normal element, and a no-op on fp16 values', () => {
    const x = Float32Array.from({ length: 4096 }, (_, i) => Math.sinh((i - 2048) / 300) * 1.7)
    const r = roundToFp16(x)
    for (let i = 0; i < x.length; i++) {
      const v = x[i] as number
      if (Math.abs(v) >= 2 ** -14)
        expect(Math.abs((r[i] as number) - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11)
    }
    expect(roundToFp16(r)).toBe(r)
  })

  it('roundToFp16 saturates finite values past fp16 range at ±65504 and leaves non-finite ones', () => {
    const r = roundToFp16(Float32Array.of(65519, 65520, -1e9, 3e38, Number.NEGATIVE_INFINITY))
    expect(Array.from(r)).toEqual([65504, 65504, -65504, 65504, Number.NEGATIVE_INFINITY])
  })

  const malformed: Array<[string, () => Uint8Array, WireProtocolErrorCode]> = [
    [
      'tag 0 (fp32 has no tag)',
      () => frame(FrameType.StepRequest, requestBody(0, [one]), HD),
      'ERR_WIRE_DTYPE',
    ],
    ['an unknown tag 2', () => frame(FrameType.StepRequest, requestBody(2, [one]), HD), 'ERR_WIRE_DTYPE'],
    ['tag 2^32-1', () => frame(FrameType.StepResult, resultBody(0xffffffff, [one]), HD), 'ERR_WIRE_DTYPE'],
    [
      'a tag with the high bytes set',
      () => frame(FrameType.StepResult, resultBody(0x0101, [one]), HD),
      'ERR_WIRE_DTYPE',
    ],
    ['fp16 +Infinity', () => frame(FrameType.StepRequest, requestBody(1, [0x7c00]), HD), 'ERR_WIRE_PAYLOAD'],
    ['fp16 NaN', () => frame(FrameType.StepResult, resultBody(1, [one, 0x7e01]), HD), 'ERR_WIRE_PAYLOAD'],
    [
      'non-zero padding after an odd count',
      () => frame(FrameType.StepRequest, requestBody(1, [one], 1, 7), HD),
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'a count past the body',
      () => frame(FrameType.StepRequest, requestBody(1, [one, one], 3), HD),
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'an fp16 tag on a StepResult without hidden',
      () => frame(FrameType.StepResult, resultBody(1, []), HD),
      'ERR_WIRE_PAYLOAD',
    ],
  ]
  it.each(malformed)('refuses %s on receipt', (_, bytes, code) => {
    expectWireError(() => new Reassembler().push(bytes()), code)
  })

  it('the flag on a type that has no hidden state is a frame error', () => {
    const body = new RawBody().id('g1').u32(0).build()
    const bytes = frame(FrameType.StepResult, body, HD)
    bytes[3] = FrameType.FetchHidden
    expectWireError(() => new Reassembler().push(bytes), 'ERR_WIRE_FLAGS')
  })

  const badToSend: Array<[string, Record<string, unknown>]> = [
    ['an unknown dtype name', { hidden: values, hiddenDtype: 'bf16' }],
    ['a dtype that is not a string', { hidden: values, hiddenDtype: 16 }],
    ['fp16 values fp16 cannot hold (0.1)', { hidden: Float32Array.of(0.1), hiddenDtype: 'fp16' }],
    ['a float32 subnormal as fp16', { hidden: Float32Array.of(1e-40), hiddenDtype: 'fp16' }],
  ]
  it.each(badToSend)('refuses to send %s (ERR_WIRE_DTYPE)', (_, fields) => {
    const msg = { type: 'StepResult', generationId: 'g1', stepIndex: 0, ...fields } as unknown as Message
    expectWireError(() => encodeMessage(msg), 'ERR_WIRE_DTYPE')
  })

  it('fp16 bytes are exactly the little-endian binary16 of each value', () => {
    const bytes = valuesToFp16(Float32Array.of(1, -2))
    expect(Array.from(bytes)).toEqual([0x00, 0x3c, 0x00, 0xc0])
  })
})
