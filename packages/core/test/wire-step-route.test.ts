import { describe, expect, it } from 'vitest'
import { decodeFrame, encodeFrame, FrameFlag, FrameType } from '../src/wire/frame.js'
import {
  decodeMessageBody,
  encodeMessage,
  MAX_ROUTE_HOPS,
  type StepRequest,
  validateMessage,
} from '../src/wire/messages.js'
import { Reassembler } from '../src/wire/reassembler.js'
import { expectWireError } from './wire-helpers.js'

// Chained steps (wire/step-route.ts): the route and replyTo of a StepRequest, alone and batched.

const base: StepRequest = {
  type: 'StepRequest',
  generationId: 'g-route',
  stepIndex: 5,
  startPos: 5,
  seqLen: 2,
  temperature: 0,
  deadlineMs: 1000,
  hidden: Float32Array.of(1, -2, 3.5, 0.25, 8, -0),
}

function roundTrip(msg: StepRequest | { type: 'StepRequests'; requests: StepRequest[] }) {
  const r = new Reassembler()
  let out: unknown
  for (const f of encodeMessage(msg)) out = r.push(f)
  return out
}

describe('step routes on the wire', () => {
  it('round-trips a route and replyTo, alone and inside a batch', () => {
    const routed: StepRequest = { ...base, route: ['worker.b', 'w_c-3'], replyTo: 'gateway-default' }
    const got = roundTrip(routed) as StepRequest
    expect(got.route).toEqual(['worker.b', 'w_c-3'])
    expect(got.replyTo).toBe('gateway-default')
    expect(Array.from(got.hidden as Float32Array)).toEqual(Array.from(base.hidden as Float32Array))
    // The last hop: an empty route still says whom to answer.
    const last = roundTrip({ ...base, route: [], replyTo: 'gw' }) as StepRequest
    expect(last.route).toEqual([])
    expect(last.replyTo).toBe('gw')
    const batch = roundTrip({
      type: 'StepRequests',
      requests: [routed, base, { ...routed, generationId: 'g2' }],
    }) as {
      requests: StepRequest[]
    }
    expect(batch.requests.map((q) => q.replyTo)).toEqual(['gateway-default', undefined, 'gateway-default'])
    expect(batch.requests[2]?.route).toEqual(['worker.b', 'w_c-3'])
  })

  it('sets the Route flag on routed requests only', () => {
    const [frame] = encodeMessage(base)
    expect((decodeFrame(frame as Uint8Array).flags ?? 0) & FrameFlag.Route).toBe(0)
    const [routed] = encodeMessage({ ...base, route: [], replyTo: 'gw' })
    expect((decodeFrame(routed as Uint8Array).flags ?? 0) & FrameFlag.Route).toBe(FrameFlag.Route)
  })

  const bad: Array<[string, Record<string, unknown>]> = [
    ['replyTo without a route', { replyTo: 'gw' }],
    ['a route without replyTo', { route: ['a'] }],
    ['a route that is not an array', { route: 'a', replyTo: 'gw' }],
    ['an empty replyTo', { route: [], replyTo: '' }],
    ['a replyTo with a space', { route: [], replyTo: 'g w' }],
    ['a replyTo of 65 characters', { route: [], replyTo: 'x'.repeat(65) }],
    ['a hop that is not a string', { route: [7], replyTo: 'gw' }],
    ['a hop with a non-ASCII character', { route: ['wé'], replyTo: 'gw' }],
    ['a peer twice', { route: ['a', 'b', 'a'], replyTo: 'gw' }],
    ['the coordinator on its own route', { route: ['a', 'gw'], replyTo: 'gw' }],
    [
      `${MAX_ROUTE_HOPS + 1} hops`,
      { route: Array.from({ length: MAX_ROUTE_HOPS + 1 }, (_, i) => `p${i}`), replyTo: 'gw' },
    ],
    ['a route with a fingerprint challenge', { route: [], replyTo: 'gw', fingerprintChallenge: 9 }],
  ]
  it.each(bad)('refuses %s with ERR_WIRE_PAYLOAD', (_name, fields) => {
    expectWireError(() => validateMessage({ ...base, ...fields }), 'ERR_WIRE_PAYLOAD')
    expectWireError(() => encodeMessage({ ...base, ...fields } as StepRequest), 'ERR_WIRE_PAYLOAD')
  })

  it('accepts the longest route', () => {
    const route = Array.from({ length: MAX_ROUTE_HOPS }, (_, i) => `p${i}`)
    expect((roundTrip({ ...base, route, replyTo: 'gw' }) as StepRequest).route).toEqual(route)
  })

  it('refuses the Route flag on a StepResult, and a truncated route', () => {
    const result = encodeMessage({
      type: 'StepResult',
      generationId: 'g',
      stepIndex: 0,
      hidden: Float32Array.of(1),
    })
    const f = decodeFrame(result[0] as Uint8Array)
    expectWireError(() => encodeFrame({ ...f, flags: FrameFlag.Route }), 'ERR_WIRE_FLAGS')
    expectWireError(
      () => decodeMessageBody(FrameType.StepResult, f.payload, FrameFlag.Route),
      'ERR_WIRE_FLAGS',
    )
    // A body that promises a route and ends early.
    const [req] = encodeMessage({ ...base, route: ['abcd'], replyTo: 'gw' })
    const r = decodeFrame(req as Uint8Array)
    const cut = r.payload.subarray(0, r.payload.length - 8)
    expectWireError(() => decodeMessageBody(FrameType.StepRequest, cut, r.flags), 'ERR_WIRE_PAYLOAD')
    // Route bytes appended to a request whose flags do not announce them are trailing garbage.
    const [plain] = encodeMessage(base)
    const p = decodeFrame(plain as Uint8Array)
    const tail = new Uint8Array(p.payload.length + 8)
    tail.set(p.payload)
    tail.set([2, 103, 119, 0, 0, 0, 0, 0], p.payload.length)
    expectWireError(() => decodeMessageBody(FrameType.StepRequest, tail, p.flags), 'ERR_WIRE_PAYLOAD')
  })
})
