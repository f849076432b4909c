import { mulberry32 as rng } from '@butterfly/testing'
import { describe, expect, it } from 'vitest'
import { ButterflyError, GenerationError } from '../src/errors.js'
import { decodeFrame, FrameType, MAX_CHUNK_BYTES, MAX_CHUNK_PAYLOAD_BYTES } from '../src/wire/frame.js'
import {
  encodeMessage,
  MAX_ERROR_MESSAGE_BYTES,
  type Message,
  type ReceivedMessage,
  type StepRequest,
  type StepResult,
  toWireError,
  validateMessage,
} from '../src/wire/messages.js'
import { Reassembler } from '../src/wire/reassembler.js'
import { expectWireError, firstByteMismatch, shuffled } from './wire-helpers.js'

function deliver(frames: Uint8Array[], r = new Reassembler()): ReceivedMessage {
  let out: ReceivedMessage | undefined
  frames.forEach((frame, i) => {
    const got = r.push(frame)
    if (i < frames.length - 1) expect(got, `chunk ${i} of ${frames.length} completed early`).toBeUndefined()
    else out = got
  })
  expect(out).toBeDefined()
  expect(r.pendingMessages).toBe(0)
  expect(r.bufferedBytes).toBe(0)
  return out as ReceivedMessage
}

function randomFloats(n: number, seed: number): Float32Array {
  const r = rng(seed)
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = (r() - 0.5) * 2 ** ((i % 40) - 20)
  // Values whose bits are easy to lose: -0, the smallest subnormal, the largest finite float.
  out[0] = -0
  out[1] = 1.401298464324817e-45
  out[2] = -3.4028234663852886e38
  return out
}

function expectAllFramesFit(frames: Uint8Array[]): void {
  for (const f of frames) expect(f.length).toBeLessThanOrEqual(MAX_CHUNK_BYTES)
}

describe('wire messages', () => {
  it('round-trips a first-stage StepRequest with tokens', () => {
    const msg: StepRequest = {
      type: 'StepRequest',
      generationId: 'gen_A-9',
      stepIndex: 3,
      startPos: 17,
      seqLen: 4,
      temperature: 0.7,
      deadlineMs: 30_000,
      tokens: Int32Array.of(0, 1, 2 ** 31 - 1, 128_000),
    }
    const frames = encodeMessage(msg)
    expect(frames).toHaveLength(1)
    const got = deliver(frames)
    expect(got).toEqual({ ...msg, temperature: Math.fround(0.7) })
    expect((got as StepRequest).hidden).toBeUndefined()
  })

  it('round-trips a 1 MB hidden state over many chunks delivered shuffled', () => {
    const seqLen = 128
    const hidden = randomFloats(seqLen * 2048, 1)
    expect(hidden.byteLength).toBe(1024 * 1024)
    const msg: StepRequest = {
      type: 'StepRequest',
      generationId: 'g'.repeat(64),
      stepIndex: 0xffffffff,
      startPos: 0,
      seqLen,
      temperature: 0,
      deadlineMs: 0,
      hidden,
    }
    const frames = encodeMessage(msg)
    // Body: 68 (64-char id, padded) + 28 (seven u32/f32 fields) + the floats.
    expect(frames.length).toBe(Math.ceil((96 + hidden.byteLength) / MAX_CHUNK_PAYLOAD_BYTES))
    expectAllFramesFit(frames)
    for (const seed of [1, 2, 3]) {
      const got = deliver(shuffled(frames, seed)) as StepRequest
      expect(got.type).toBe('StepRequest')
      expect(got.stepIndex).toBe(0xffffffff)
      expect(got.generationId).toBe(msg.generationId)
      expect(got.hidden).toBeInstanceOf(Float32Array)
      expect(firstByteMismatch(got.hidden as Float32Array, hidden)).toBe(-1)
    }
  })

  it('round-trips StepResult with hidden and with top-k', () => {
    const hidden = randomFloats(3 * 64, 2)
    const a = deliver(
      encodeMessage({ type: 'StepResult', generationId: 'x', stepIndex: 1, hidden }),
    ) as StepResult
    expect(firstByteMismatch(a.hidden as Float32Array, hidden)).toBe(-1)
    expect(a.topk).toBeUndefined()

    const topk = {
      values: Float32Array.of(12.5, 3.25, 3.25, -1e30, Number.NEGATIVE_INFINITY),
      ids: Int32Array.of(5, 1, 9, 0, 131_071),
      logSumExp: 12.500000000000123,
    }
    const b = deliver(
      encodeMessage({ type: 'StepResult', generationId: 'x', stepIndex: 2, topk }),
    ) as StepResult
    expect(b.hidden).toBeUndefined()
    expect(b.topk?.logSumExp).toBe(topk.logSumExp)
    expect(firstByteMismatch(b.topk?.values as Float32Array, topk.values)).toBe(-1)
    expect(Array.from(b.topk?.ids ?? [])).toEqual(Array.from(topk.ids))
  })

  it('round-trips StepError and rebuilds the error', () => {
    const original = new GenerationError('ERR_STEP_ORDER', 'étape 3 arrivée avant 2 — ✓ 🦋')
    const got = deliver(
      encodeMessage({ type: 'StepError', generationId: 'g1', stepIndex: 3, error: toWireError(original) }),
    )
    if (got.type !== 'StepError') throw new Error('wrong type')
    expect(got.error).toBeInstanceOf(ButterflyError)
    expect(got.error.name).toBe('GenerationError')
    expect(got.error.code).toBe('ERR_STEP_ORDER')
    expect(got.error.message).toBe(original.message)
    expect(got.stepIndex).toBe(3)
  })

  it('round-trips a StepRequest that asks for a fingerprint, and only it sets the flag', () => {
    const base: StepRequest = {
      type: 'StepRequest',
      generationId: 'g',
      stepIndex: 2,
      startPos: 2,
      seqLen: 1,
      temperature: 0,
      deadlineMs: 100,
      hidden: randomFloats(8, 3),
    }
    for (const challenge of [0, 1, 0xffffffff]) {
      const frames = encodeMessage({ ...base, fingerprintChallenge: challenge })
      expect(decodeFrame(frames[0] as Uint8Array).flags).toBe(1)
      const got = deliver(frames) as StepRequest
      expect(got.fingerprintChallenge).toBe(challenge)
      expect(firstByteMismatch(got.hidden as Float32Array, base.hidden as Float32Array)).toBe(-1)
    }
    const plain = encodeMessage(base)
    expect(decodeFrame(plain[0] as Uint8Array).flags).toBe(0)
    expect((deliver(plain) as StepRequest).fingerprintChallenge).toBeUndefined()
    for (const bad of [-1, 2 ** 32, 1.5, Number.NaN]) {
      expectWireError(() => encodeMessage({ ...base, fingerprintChallenge: bad }), 'ERR_WIRE_PAYLOAD')
    }
  })

  it('round-trips a StepRequest that limits the candidates, alone, routed, fingerprinted and batched', () => {
    const base: StepRequest = {
      type: 'StepRequest',
      generationId: 'g',
      stepIndex: 5,
      startPos: 5,
      seqLen: 1,
      temperature: 0,
      deadlineMs: 100,
      hidden: randomFloats(8, 4),
    }
    const variants: StepRequest[] = [
      { ...base, candidates: 1 },
      { ...base, candidates: 65536, fingerprintChallenge: 7 },
      { ...base, candidates: 3, route: ['p2'], replyTo: 'coord' },
    ]
    for (const m of variants) {
      const frames = encodeMessage(m)
      expect((decodeFrame(frames[0] as Uint8Array).flags ?? 0) & 0x08).toBe(0x08)
      const got = deliver(frames) as StepRequest
      expect(got.candidates).toBe(m.candidates)
      expect(got.fingerprintChallenge).toBe(m.fingerprintChallenge)
      expect(got.route).toEqual(m.route)
      expect(firstByteMismatch(got.hidden as Float32Array, base.hidden as Float32Array)).toBe(-1)
    }
    const batch = deliver(encodeMessage({ type: 'StepRequests', requests: [...variants, base] }))
    expect(batch.type === 'StepRequests' && batch.requests.map((r) => r.candidates)).toEqual([
      1,
      65536,
      3,
      undefined,
    ])
    expect((decodeFrame(encodeMessage(base)[0] as Uint8Array).flags ?? 0) & 0x08).toBe(0)
    for (const bad of [0, -1, 65537, 1.5, Number.NaN]) {
      expectWireError(() => encodeMessage({ ...base, candidates: bad }), 'ERR_WIRE_PAYLOAD')
    }
  })

  it('round-trips EndGeneration, FetchHidden, Truncate, Ping and Pong', () => {
    const cases: Message[] = [
      { type: 'EndGeneration', generationId: 'abc_DEF-123' },
      { type: 'FetchHidden', generationId: 'abc_DEF-123', stepIndex: 0xffffffff },
      { type: 'Truncate', generationId: 'abc_DEF-123', length: 0 },
      { type: 'Truncate', generationId: 'a'.repeat(64), length: 0xffffffff },
      { type: 'Ping', nonce: 0xdeadbeef, sentAt: 1_712_345_678_901.25 },
      { type: 'Pong', nonce: 0, sentAt: 0 },
    ]
    for (const msg of cases) expect(deliver(encodeMessage(msg))).toEqual(msg)
  })

  it('encodes Truncate as id then u32 length, and refuses lengths that are not a u32', () => {
    const [frame] = encodeMessage({ type: 'Truncate', generationId: 'g1', length: 0x01020304 })
    const decoded = decodeFrame(frame as Uint8Array)
    expect(decoded.type).toBe(FrameType.Truncate)
    expect(decoded.type).toBe(8)
    expect(Array.from(decoded.payload)).toEqual([2, 0x67, 0x31, 0, 4, 3, 2, 1])
    for (const bad of [-1, 2 ** 32, 1.5, Number.NaN, undefined]) {
      const msg = { type: 'Truncate', generationId: 'g1', length: bad } as unknown as Message
      expectWireError(() => encodeMessage(msg), 'ERR_WIRE_PAYLOAD')
    }
    expectWireError(
      () => encodeMessage({ type: 'Truncate', generationId: 'a'.repeat(65), length: 0 }),
      'ERR_WIRE_PAYLOAD',
    )
  })

  it('keeps every frame within 64 KiB around chunk boundaries and with small chunks', () => {
    // Body = 4 (id) + 20 (fixed fields) + 4 * n: pick n so bodies land on, just under and just over a chunk.
    const cases = [
      [16_371, 1],
      [16_372, 1],
      [16_373, 2],
      [32_750, 2],
      [32_751, 3],
    ] as const
    for (const [n, count] of cases) {
      const hidden = randomFloats(n, n)
      const frames = encodeMessage({ type: 'StepResult', generationId: 'g', stepIndex: 0, hidden })
      expect(frames).toHaveLength(count)
      expectAllFramesFit(frames)
      const got = deliver(shuffled(frames, n)) as StepResult
      expect(firstByteMismatch(got.hidden as Float32Array, hidden)).toBe(-1)
    }
    const hidden = randomFloats(1000, 9)
    const small = encodeMessage(
      { type: 'StepResult', generationId: 'g', stepIndex: 0, hidden },
      { maxChunkBytes: 61 },
    )
    expect(small.length).toBe(Math.ceil((24 + 4000) / 37))
    for (const f of small) expect(f.length).toBeLessThanOrEqual(61)
    expect(
      firstByteMismatch((deliver(shuffled(small, 4)) as StepResult).hidden as Float32Array, hidden),
    ).toBe(-1)
  })

  it('puts the message id in every frame and counts up when none is given', () => {
    const msg: Message = { type: 'Ping', nonce: 1, sentAt: 1 }
    expect(decodeFrame(encodeMessage(msg, { messageId: 77 })[0] as Uint8Array).messageId).toBe(77)
    const a = decodeFrame(encodeMessage(msg)[0] as Uint8Array).messageId
    const b = decodeFrame(encodeMessage(msg)[0] as Uint8Array).messageId
    expect(b).toBe((a + 1) >>> 0)
    const frames = encodeMessage(
      { type: 'StepResult', generationId: 'g', stepIndex: 0, hidden: new Float32Array(40_000) },
      { messageId: 5 },
    )
    for (const [i, f] of frames.entries()) {
      const d = decodeFrame(f)
      expect([d.type, d.messageId, d.chunkIndex, d.chunkCount]).toEqual([
        FrameType.StepResult,
        5,
        i,
        frames.length,
      ])
    }
  })

  it('decodes a single-chunk hidden state without copying, and copies when misaligned', () => {
    const hidden = randomFloats(256, 5)
    const [frame] = encodeMessage({ type: 'StepResult', generationId: 'g', stepIndex: 0, hidden })
    const viewed = new Reassembler().push(frame as Uint8Array) as StepResult
    expect(viewed.hidden?.buffer).toBe((frame as Uint8Array).buffer)
    const shifted = new Uint8Array((frame as Uint8Array).length + 1)
    shifted.set(frame as Uint8Array, 1)
    const copied = new Reassembler().push(shifted.subarray(1)) as StepResult
    expect(copied.hidden?.buffer).not.toBe(shifted.buffer)
    expect(firstByteMismatch(copied.hidden as Float32Array, hidden)).toBe(-1)
  })

  it('validates on the sending side too', () => {
    const base: StepRequest = {
      type: 'StepRequest',
      generationId: 'g',
      stepIndex: 0,
      startPos: 0,
      seqLen: 2,
      temperature: 1,
      deadlineMs: 0,
      tokens: Int32Array.of(1, 2),
    }
    const bad: unknown[] = [
      null,
      { type: 'Nope' },
      { ...base, generationId: 'has space' },
      { ...base, tokens: [1, 2] },
      { ...base, tokens: Int32Array.of(1) },
      { ...base, hidden: new Float32Array(2) },
      { ...base, stepIndex: 1.5 },
      { ...base, temperature: Number.NaN },
      {
        type: 'StepResult',
        generationId: 'g',
        stepIndex: 0,
        hidden: Float32Array.of(1, Number.POSITIVE_INFINITY),
      },
      { type: 'Ping', nonce: -1, sentAt: 0 },
      {
        type: 'StepError',
        generationId: 'g',
        stepIndex: 0,
        error: { name: 'E', code: 'C', message: 'x'.repeat(1025) },
      },
    ]
    for (const msg of bad) expectWireError(() => encodeMessage(msg as Message), 'ERR_WIRE_PAYLOAD')
    expectWireError(
      () =>
        encodeMessage(
          { type: 'StepResult', generationId: 'g', stepIndex: 0, hidden: new Float32Array(40_000) },
          { maxMessageBytes: MAX_CHUNK_PAYLOAD_BYTES },
        ),
      'ERR_WIRE_TOO_LARGE',
    )
    expectWireError(() => encodeMessage(base, { maxChunkBytes: 24 }), 'ERR_WIRE_OPTIONS')
    expectWireError(() => encodeMessage(base, { maxChunkBytes: MAX_CHUNK_BYTES + 1 }), 'ERR_WIRE_OPTIONS')
    expectWireError(() => encodeMessage(base, { messageId: -1 }), 'ERR_WIRE_CHUNK')
  })

  it('toWireError turns anything thrown into a sendable error', () => {
    const long = toWireError(new Error('é'.repeat(3000)))
    expect(new TextEncoder().encode(long.message).length).toBeLessThanOrEqual(MAX_ERROR_MESSAGE_BYTES)
    expect(long.message.endsWith('…')).toBe(true)
    expect(long.message.startsWith('éé')).toBe(true)
    expect(long).toEqual({ name: 'Error', code: 'ERR_INTERNAL', message: long.message })
    const emoji = toWireError(new Error('🦋'.repeat(400)))
    expect(emoji.message).not.toMatch(/\uFFFD/)
    const abort = toWireError(Object.assign(new Error('stop'), { name: 'AbortError', code: 20 }))
    expect(abort).toEqual({ name: 'AbortError', code: 'ERR_ABORTED', message: 'stop' })
    expect(toWireError('plain string')).toEqual({
      name: 'Error',
      code: 'ERR_INTERNAL',
      message: 'plain string',
    })
    expect(toWireError({ name: 'bad name!', code: 'bad code!' }).name).toBe('Error')
    for (const e of [long, emoji, abort, toWireError(undefined), toWireError(null)]) {
      expect(() =>
        validateMessage({ type: 'StepError', generationId: 'g', stepIndex: 0, error: e }),
      ).not.toThrow()
    }
  })
})
