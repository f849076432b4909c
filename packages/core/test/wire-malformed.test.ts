import { mulberry32 as rng } from '@butterfly/testing'
import { describe, expect, it } from 'vitest'
import { WireProtocolError, type WireProtocolErrorCode } from '../src/errors.js'
import { encodeFrame, FrameType, MAX_CHUNK_PAYLOAD_BYTES } from '../src/wire/frame.js'
import { encodeMessage, type Message } from '../src/wire/messages.js'
import { Reassembler, type ReassemblerOptions } from '../src/wire/reassembler.js'
import { expectWireError, frameOf, patched, RawBody } from './wire-helpers.js'

const ping = frameOf(FrameType.Ping, new RawBody().u32(1).f64(2).build())

/** A valid StepRequest body with the given fields overridden (tokens/hidden written raw). */
function stepRequestBody(o: {
  id?: string
  seqLen?: number
  startPos?: number
  temperature?: number
  tokens?: number[]
  hidden?: number[]
  tokenCount?: number
  hiddenCount?: number
}): Uint8Array {
  const tokens = o.tokens ?? (o.hidden === undefined ? [1, 2] : [])
  const hidden = o.hidden ?? []
  const b = new RawBody()
    .id(o.id ?? 'g1')
    .u32(0)
    .u32(o.startPos ?? 0)
    .u32(o.seqLen ?? 2)
    .f32(o.temperature ?? 1)
    .u32(1000)
    .u32(o.tokenCount ?? tokens.length)
    .u32(o.hiddenCount ?? hidden.length)
  for (const t of tokens) b.i32(t)
  for (const h of hidden) b.f32(h)
  return b.build()
}

function withTail(body: Uint8Array, tail: number[]): Uint8Array {
  return Uint8Array.from([...body, ...tail])
}

/** A StepRequest frame with the Candidates flag: a u32 count must end the body. */
function candidatesFrame(body: Uint8Array): Uint8Array {
  return encodeFrame({
    type: B.StepRequest,
    messageId: 1,
    chunkIndex: 0,
    chunkCount: 1,
    flags: 0x08,
    payload: body,
  })
}

/** A frame with the Extensions flag, written by hand (encodeFrame refuses it on most types). */
function flaggedFrame(type: FrameType, body: Uint8Array): Uint8Array {
  const frame = frameOf(B.StepResult, body)
  frame[3] = type
  frame[4] = 1
  return frame
}

function stepResultTopK(values: number[], ids: number[], logSumExp: number): Uint8Array {
  const b = new RawBody().id('g1').u32(0).u32(0).u32(values.length).f64(logSumExp)
  for (const v of values) b.f32(v)
  for (const i of ids) b.i32(i)
  return b.build()
}

function stepError(name: string, code: string, message: Uint8Array): Uint8Array {
  return new RawBody()
    .id('g1')
    .u32(0)
    .u8(name.length)
    .ascii(name)
    .u8(code.length)
    .ascii(code)
    .u16(message.length)
    .raw(message)
    .build()
}

/** One StepResult in three chunks (two with floats = 30_000). */
function bigFrames(messageId = 9, floats = 40_000): Uint8Array[] {
  const msg: Message = {
    type: 'StepResult',
    generationId: 'g',
    stepIndex: 0,
    hidden: new Float32Array(floats),
  }
  return encodeMessage(msg, { messageId })
}

function headerEdit(offset: number, value: number, width: 8 | 32 = 32): (f: Uint8Array) => Uint8Array {
  return (f) =>
    patched(f, (dv) => (width === 8 ? dv.setUint8(offset, value) : dv.setUint32(offset, value, true)))
}

interface Case {
  name: string
  /** Frames pushed in order into one reassembler: all but the last must be accepted. */
  frames: () => (Uint8Array | ArrayBuffer)[]
  code: WireProtocolErrorCode
  opts?: ReassemblerOptions
}

const B = FrameType
const cases: Case[] = [
  // Frame header.
  { name: 'wrong magic', frames: () => [headerEdit(0, 0x7b, 8)(ping)], code: 'ERR_WIRE_MAGIC' },
  { name: 'second magic byte', frames: () => [headerEdit(1, 0x02, 8)(ping)], code: 'ERR_WIRE_MAGIC' },
  { name: 'JSON text', frames: () => [new TextEncoder().encode('{"type":"Ping"}')], code: 'ERR_WIRE_MAGIC' },
  { name: 'not bytes at all', frames: () => ['hello' as unknown as Uint8Array], code: 'ERR_WIRE_MAGIC' },
  { name: 'unknown version', frames: () => [headerEdit(2, 2, 8)(ping)], code: 'ERR_WIRE_VERSION' },
  { name: 'version 0', frames: () => [headerEdit(2, 0, 8)(ping)], code: 'ERR_WIRE_VERSION' },
  { name: 'unknown type', frames: () => [headerEdit(3, 99, 8)(ping)], code: 'ERR_WIRE_TYPE' },
  { name: 'type 0', frames: () => [headerEdit(3, 0, 8)(ping)], code: 'ERR_WIRE_TYPE' },
  { name: 'non-zero flags', frames: () => [headerEdit(4, 1, 8)(ping)], code: 'ERR_WIRE_FLAGS' },
  { name: 'non-zero reserved', frames: () => [headerEdit(7, 1, 8)(ping)], code: 'ERR_WIRE_FLAGS' },
  { name: 'empty input', frames: () => [new Uint8Array(0)], code: 'ERR_WIRE_TRUNCATED' },
  { name: 'truncated header', frames: () => [ping.slice(0, 10)], code: 'ERR_WIRE_TRUNCATED' },
  { name: 'header only, 23 bytes', frames: () => [ping.slice(0, 23)], code: 'ERR_WIRE_TRUNCATED' },
  { name: 'payload length past end', frames: () => [headerEdit(20, 13)(ping)], code: 'ERR_WIRE_TRUNCATED' },
  { name: 'payload cut short', frames: () => [ping.slice(0, ping.length - 1)], code: 'ERR_WIRE_TRUNCATED' },
  {
    name: 'bytes after the payload',
    frames: () => [Uint8Array.from([...ping, 0])],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'payload length 2^32-1',
    frames: () => [headerEdit(20, 0xffffffff)(ping)],
    code: 'ERR_WIRE_TOO_LARGE',
  },
  {
    name: 'frame over 64 KiB',
    frames: () => {
      const f = new Uint8Array(24 + MAX_CHUNK_PAYLOAD_BYTES + 1)
      f.set(ping.subarray(0, 20))
      new DataView(f.buffer).setUint32(20, MAX_CHUNK_PAYLOAD_BYTES + 1, true)
      return [f]
    },
    code: 'ERR_WIRE_TOO_LARGE',
  },
  { name: 'chunk index = count', frames: () => [headerEdit(12, 1)(ping)], code: 'ERR_WIRE_CHUNK' },
  { name: 'chunk index > count', frames: () => [headerEdit(12, 0xffffffff)(ping)], code: 'ERR_WIRE_CHUNK' },
  { name: 'chunk count 0', frames: () => [headerEdit(16, 0)(ping)], code: 'ERR_WIRE_CHUNK' },
  {
    name: 'empty payload',
    frames: () => [headerEdit(20, 0)(ping).slice(0, 24)],
    code: 'ERR_WIRE_CHUNK',
  },
  // Reassembly.
  {
    name: 'duplicate chunk',
    frames: () => [bigFrames()[0], bigFrames()[0]] as Uint8Array[],
    code: 'ERR_WIRE_CHUNK',
  },
  {
    name: 'inconsistent count between chunks',
    frames: () => [bigFrames()[0] as Uint8Array, headerEdit(16, 4)(bigFrames()[1] as Uint8Array)],
    code: 'ERR_WIRE_CHUNK',
  },
  {
    name: 'inconsistent type between chunks',
    frames: () => [
      bigFrames()[0] as Uint8Array,
      headerEdit(3, B.StepRequest, 8)(bigFrames()[1] as Uint8Array),
    ],
    code: 'ERR_WIRE_CHUNK',
  },
  {
    name: 'single chunk reusing a pending message id',
    frames: () => [
      bigFrames(5)[0] as Uint8Array,
      frameOf(B.Ping, new RawBody().u32(1).f64(2).build(), { messageId: 5 }),
    ],
    code: 'ERR_WIRE_CHUNK',
  },
  {
    name: 'chunk count beyond the message cap',
    frames: () => [bigFrames()[0] as Uint8Array],
    opts: { maxMessageBytes: 2 * MAX_CHUNK_PAYLOAD_BYTES },
    code: 'ERR_WIRE_TOO_LARGE',
  },
  {
    name: 'chunk count 2^32-1',
    frames: () => [headerEdit(16, 0xffffffff)(bigFrames()[0] as Uint8Array)],
    code: 'ERR_WIRE_TOO_LARGE',
  },
  {
    name: 'message total over cap',
    frames: () => bigFrames(9, 30_000),
    opts: { maxMessageBytes: 100_000 },
    code: 'ERR_WIRE_TOO_LARGE',
  },
  {
    name: 'too many pending messages',
    frames: () => [1, 2, 3].map((id) => bigFrames(id)[0] as Uint8Array),
    opts: { maxPending: 2 },
    code: 'ERR_WIRE_PENDING',
  },
  {
    name: 'too many pending bytes',
    frames: () => [1, 2].map((id) => bigFrames(id)[0] as Uint8Array),
    opts: { maxBufferedBytes: MAX_CHUNK_PAYLOAD_BYTES + 10 },
    code: 'ERR_WIRE_PENDING',
  },
  // Message bodies.
  {
    name: 'NaN in hidden',
    frames: () => [frameOf(B.StepRequest, stepRequestBody({ hidden: [1, Number.NaN] }))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'Infinity in result hidden',
    frames: () => [
      frameOf(
        B.StepResult,
        new RawBody().id('g1').u32(0).u32(1).u32(0).f64(0).f32(Number.POSITIVE_INFINITY).build(),
      ),
    ],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'token count != seqLen',
    frames: () => [frameOf(B.StepRequest, stepRequestBody({ seqLen: 3 }))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'hidden not a multiple of seqLen',
    frames: () => [frameOf(B.StepRequest, stepRequestBody({ seqLen: 2, hidden: [1, 2, 3] }))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'both tokens and hidden',
    frames: () => [frameOf(B.StepRequest, stepRequestBody({ tokens: [1, 2], hidden: [1, 2] }))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'candidates flag without the count',
    frames: () => [candidatesFrame(stepRequestBody({}))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'zero candidates',
    frames: () => [candidatesFrame(withTail(stepRequestBody({}), [0, 0, 0, 0]))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'more candidates than any top-k',
    frames: () => [candidatesFrame(withTail(stepRequestBody({}), [1, 0, 1, 0]))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'neither tokens nor hidden',
    frames: () => [frameOf(B.StepRequest, stepRequestBody({ tokens: [] }))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'negative token',
    frames: () => [frameOf(B.StepRequest, stepRequestBody({ tokens: [1, -5] }))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'seqLen 0',
    frames: () => [frameOf(B.StepRequest, stepRequestBody({ seqLen: 0, tokens: [], hidden: [1] }))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'position past the cap',
    frames: () => [frameOf(B.StepRequest, stepRequestBody({ startPos: 0xfffffffe }))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'NaN temperature',
    frames: () => [frameOf(B.StepRequest, stepRequestBody({ temperature: Number.NaN }))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'temperature 1000',
    frames: () => [frameOf(B.StepRequest, stepRequestBody({ temperature: 1000 }))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'hidden count past the body',
    frames: () => [frameOf(B.StepRequest, stepRequestBody({ hidden: [1, 2], hiddenCount: 0xffffffff }))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'body truncated',
    frames: () => [frameOf(B.StepRequest, stepRequestBody({}).slice(0, 14))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'body trailing bytes',
    frames: () => [frameOf(B.StepRequest, Uint8Array.from([...stepRequestBody({}), 0, 0, 0, 0]))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'generation id with a space',
    frames: () => [frameOf(B.EndGeneration, new RawBody().id('g 1').build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'generation id with a slash',
    frames: () => [frameOf(B.EndGeneration, new RawBody().id('../etc').build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'generation id with non-ASCII',
    frames: () => [frameOf(B.EndGeneration, new RawBody().u8(2).raw([0xc3, 0xa9]).pad4().build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'generation id 65 chars',
    frames: () => [frameOf(B.EndGeneration, new RawBody().id('a'.repeat(65)).build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'generation id empty',
    frames: () => [frameOf(B.EndGeneration, new RawBody().id('').build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'non-zero padding',
    frames: () => [frameOf(B.EndGeneration, new RawBody().u8(1).ascii('g').pad4(7).build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'oversized error message',
    frames: () => [frameOf(B.StepError, stepError('E', 'ERR_X', new Uint8Array(1025).fill(0x61)))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'error message not UTF-8',
    frames: () => [frameOf(B.StepError, stepError('E', 'ERR_X', Uint8Array.of(0xff, 0xfe)))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'error name not an identifier',
    frames: () => [frameOf(B.StepError, stepError('<script>', 'ERR_X', Uint8Array.of(0x61)))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'error code empty',
    frames: () => [frameOf(B.StepError, stepError('E', '', Uint8Array.of(0x61)))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'top-k unsorted',
    frames: () => [frameOf(B.StepResult, stepResultTopK([1, 2], [0, 1], 3))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'top-k NaN value',
    frames: () => [frameOf(B.StepResult, stepResultTopK([Number.NaN], [0], 3))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'top-k negative id',
    frames: () => [frameOf(B.StepResult, stepResultTopK([2, 1], [0, -1], 3))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'top-k logSumExp Infinity',
    frames: () => [frameOf(B.StepResult, stepResultTopK([2], [0], Number.POSITIVE_INFINITY))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'result with neither hidden nor top-k',
    frames: () => [frameOf(B.StepResult, new RawBody().id('g1').u32(0).u32(0).u32(0).f64(0).build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'ping sentAt NaN',
    frames: () => [frameOf(B.Ping, new RawBody().u32(1).f64(Number.NaN).build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'fingerprint flag on a request without the challenge',
    frames: () => [flaggedFrame(B.StepRequest, stepRequestBody({}))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'fingerprint challenge cut short',
    frames: () => [flaggedFrame(B.StepRequest, withTail(stepRequestBody({}), [1, 2]))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'bytes after a fingerprint challenge',
    frames: () => [flaggedFrame(B.StepRequest, withTail(stepRequestBody({}), [1, 0, 0, 0, 9, 9, 9, 9]))],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'fetch without a step index',
    frames: () => [frameOf(B.FetchHidden, new RawBody().id('g1').build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'fetch with a bad generation id',
    frames: () => [frameOf(B.FetchHidden, new RawBody().id('g 1').u32(0).build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'flags on a fetch',
    frames: () => [flaggedFrame(B.FetchHidden, new RawBody().id('g1').u32(0).build())],
    code: 'ERR_WIRE_FLAGS',
  },
  {
    name: 'truncate without a length',
    frames: () => [frameOf(B.Truncate, new RawBody().id('g1').build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'truncate with a length cut short',
    frames: () => [frameOf(B.Truncate, new RawBody().id('g1').u8(1).u8(0).build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'bytes after a truncate length',
    frames: () => [frameOf(B.Truncate, new RawBody().id('g1').u32(3).u32(0).build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'truncate with a bad generation id',
    frames: () => [frameOf(B.Truncate, new RawBody().id('g/1').u32(0).build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'truncate with an empty generation id',
    frames: () => [frameOf(B.Truncate, new RawBody().id('').u32(0).build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
  {
    name: 'flags on a truncate',
    frames: () => [flaggedFrame(B.Truncate, new RawBody().id('g1').u32(0).build())],
    code: 'ERR_WIRE_FLAGS',
  },
  {
    name: 'pong body too short',
    frames: () => [frameOf(B.Pong, new RawBody().u32(1).build())],
    code: 'ERR_WIRE_PAYLOAD',
  },
]

describe('malformed input', () => {
  it.each(cases)('$name -> $code', ({ frames, code, opts }) => {
    const r = new Reassembler(opts)
    const list = frames()
    for (const f of list.slice(0, -1)) expect(r.push(f)).toBeUndefined()
    expectWireError(() => r.push(list[list.length - 1] as Uint8Array), code)
  })

  it('the raw bodies above are valid when left unbroken', () => {
    const r = new Reassembler()
    expect(r.push(frameOf(B.StepRequest, stepRequestBody({})))?.type).toBe('StepRequest')
    expect(r.push(frameOf(B.StepRequest, stepRequestBody({ hidden: [1, 2, 3, 4] })))?.type).toBe(
      'StepRequest',
    )
    expect(r.push(frameOf(B.StepResult, stepResultTopK([2, 1], [0, 1], 3)))?.type).toBe('StepResult')
    expect(r.push(frameOf(B.StepError, stepError('E', 'ERR_X', Uint8Array.of(0x61))))?.type).toBe('StepError')
    expect(r.push(frameOf(B.EndGeneration, new RawBody().id('a'.repeat(64)).build()))?.type).toBe(
      'EndGeneration',
    )
    expect(r.push(frameOf(B.Truncate, new RawBody().id('g1').u32(0xffffffff).build()))).toEqual({
      type: 'Truncate',
      generationId: 'g1',
      length: 0xffffffff,
    })
    expect(r.push(ping)?.type).toBe('Ping')
  })

  it('survives random corruption of valid frames with WireProtocolErrors only', () => {
    const r = rng(42)
    const valid: Uint8Array[] = [
      ping,
      frameOf(B.StepRequest, stepRequestBody({ hidden: [1, 2, 3, 4] })),
      frameOf(B.StepResult, stepResultTopK([2, 1], [0, 1], 3)),
      frameOf(B.StepError, stepError('E', 'ERR_X', Uint8Array.of(0x61, 0x62))),
      frameOf(B.Truncate, new RawBody().id('g1').u32(7).build()),
      ...bigFrames(3),
    ]
    const reassembler = new Reassembler({ maxPending: 4 })
    let rejected = 0
    for (let i = 0; i < 3000; i++) {
      const f = (valid[Math.floor(r() * valid.length)] as Uint8Array).slice()
      const edits = 1 + Math.floor(r() * 3)
      for (let e = 0; e < edits; e++) f[Math.floor(r() * Math.min(f.length, 96))] = Math.floor(r() * 256)
      const input = r() < 0.1 ? f.subarray(0, Math.floor(r() * f.length)) : f
      try {
        reassembler.push(input)
      } catch (err) {
        if (!(err instanceof WireProtocolError)) throw err
        rejected++
      }
      expect(reassembler.pendingMessages).toBeLessThanOrEqual(4)
    }
    expect(rejected).toBeGreaterThan(1000)
  })
})
