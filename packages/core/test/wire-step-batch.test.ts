import { describe, expect, test } from 'vitest'
import type { StageSession, StageStepInput, StageStepOutput } from '../src/engine/inference-backend.js'
import type { WireProtocolErrorCode } from '../src/errors.js'
import { generateIdentity } from '../src/identity/peer-identity.js'
import {
  type StepSigningFields,
  signResult,
  signResults,
  stepBatchSigningBytes,
  stepSigningBytes,
  verifyResult,
  verifyResults,
} from '../src/identity/step-signature.js'
import { decodeFrame, FrameType } from '../src/wire/frame.js'
import {
  decodeMessageBody,
  encodeMessage,
  MAX_BATCH_STEPS,
  type StepRequest,
  type StepResult,
  type StepResults,
  type WireMessage,
} from '../src/wire/messages.js'
import { connect, fakeStage, MESH, rejection, remote, signerFor } from './remote-stage-helpers.js'
import { expectWireError } from './wire-helpers.js'

// Batches on the wire: StepRequests and StepResults carry the single messages' bodies, and one
// signature covers a batch of results exactly as one per result would.

const request = (id: string, startPos: number, extra: Partial<StepRequest> = {}): StepRequest => ({
  type: 'StepRequest',
  generationId: id,
  stepIndex: startPos,
  startPos,
  seqLen: 1,
  temperature: 0,
  deadlineMs: 1000,
  hidden: Float32Array.of(0.5, -1, 2, 0.25),
  ...extra,
})
const result = (id: string, stepIndex: number, extra: Partial<StepResult> = {}): StepResult => ({
  type: 'StepResult',
  generationId: id,
  stepIndex,
  hidden: Float32Array.of(1, 2, 3, stepIndex),
  ...extra,
})

/** Encodes to one frame and decodes its body again. */
function roundTrip(msg: WireMessage) {
  const [frame] = encodeMessage(msg)
  const f = decodeFrame(frame as Uint8Array)
  return decodeMessageBody(f.type, f.payload, f.flags)
}

/** The body of a message as encoded, for hand-made corruptions. */
function body(msg: WireMessage): { type: FrameType; bytes: Uint8Array } {
  const f = decodeFrame(encodeMessage(msg)[0] as Uint8Array)
  return { type: f.type, bytes: f.payload.slice() }
}

describe('StepRequests and StepResults', () => {
  test('round-trip their inner messages byte for byte, fp16 and fingerprints included', () => {
    const reqs: WireMessage = {
      type: 'StepRequests',
      requests: [
        request('a', 0),
        request('b', 3, { fingerprintChallenge: 99 }),
        request('c', 1, { hidden: Float32Array.of(0.5, 1, -2, 4), hiddenDtype: 'fp16' }),
        { ...request('d', 0), hidden: undefined, tokens: Int32Array.of(5) } as unknown as StepRequest,
      ],
    }
    const got = roundTrip(reqs)
    expect(got).toEqual(reqs)
    const results: StepResults = {
      type: 'StepResults',
      results: [
        { startPos: 0, seqLen: 1, result: result('a', 0) },
        {
          startPos: 4,
          seqLen: 2,
          result: {
            type: 'StepResult',
            generationId: 'b',
            stepIndex: 4,
            fingerprint: Uint8Array.of(1, 2, 3),
          },
        },
        {
          startPos: 7,
          seqLen: 1,
          result: {
            type: 'StepResult',
            generationId: 'c',
            stepIndex: 7,
            topk: { values: Float32Array.of(3, 1), ids: Int32Array.of(9, 2), logSumExp: 3.5 },
          },
        },
      ],
      signature: new Uint8Array(64).fill(5),
    }
    const clean = JSON.parse(JSON.stringify(results, (_k, v) => (v === undefined ? null : v)))
    expect(JSON.parse(JSON.stringify(roundTrip(results), (_k, v) => (v === undefined ? null : v)))).toEqual(
      JSON.parse(JSON.stringify(clean)),
    )
  })

  const malformed: Array<
    [string, () => { type: FrameType; bytes: Uint8Array; flags?: number }, WireProtocolErrorCode]
  > = [
    [
      'a count of zero',
      () => {
        const b = body({ type: 'StepRequests', requests: [request('a', 0)] })
        new DataView(b.bytes.buffer).setUint32(0, 0, true)
        return b
      },
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'a count over the cap',
      () => {
        const b = body({ type: 'StepRequests', requests: [request('a', 0)] })
        new DataView(b.bytes.buffer).setUint32(0, MAX_BATCH_STEPS + 1, true)
        return b
      },
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'a count larger than the items sent',
      () => {
        const b = body({ type: 'StepRequests', requests: [request('a', 0)] })
        new DataView(b.bytes.buffer).setUint32(0, 2, true)
        return b
      },
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'a signed marker that is not 0 or 1',
      () => {
        const b = body({ type: 'StepResults', results: [{ startPos: 0, seqLen: 1, result: result('a', 0) }] })
        new DataView(b.bytes.buffer).setUint32(4, 2, true)
        return b
      },
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'unknown inner flags',
      () => {
        const b = body({ type: 'StepRequests', requests: [request('a', 0)] })
        new DataView(b.bytes.buffer).setUint32(4, 0x80, true)
        return b
      },
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'an inner length past the body',
      () => {
        const b = body({ type: 'StepRequests', requests: [request('a', 0)] })
        new DataView(b.bytes.buffer).setUint32(8, 1 << 20, true)
        return b
      },
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'trailing bytes',
      () => {
        const b = body({ type: 'StepRequests', requests: [request('a', 0)] })
        const bytes = new Uint8Array(b.bytes.length + 4)
        bytes.set(b.bytes)
        return { type: b.type, bytes }
      },
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'a request body inside StepResults',
      () => {
        const inner = body(request('a', 0)).bytes
        const bytes = new Uint8Array(24 + inner.length)
        const v = new DataView(bytes.buffer)
        v.setUint32(0, 1, true)
        v.setUint32(4, 0, true)
        v.setUint32(8, 0, true)
        v.setUint32(12, 1, true)
        v.setUint32(16, 0, true)
        v.setUint32(20, inner.length, true)
        bytes.set(inner, 24)
        return { type: FrameType.StepResults, bytes }
      },
      'ERR_WIRE_PAYLOAD',
    ],
    [
      'frame flags on a batch',
      () => ({ ...body({ type: 'StepRequests', requests: [request('a', 0)] }), flags: 1 }),
      'ERR_WIRE_FLAGS',
    ],
  ]
  test.each(malformed)('refuses %s', (_, make, code) => {
    const m = make()
    expectWireError(() => decodeMessageBody(m.type, m.bytes, m.flags ?? 0), code)
  })

  const invalid: Array<[string, () => WireMessage]> = [
    ['an empty batch', () => ({ type: 'StepRequests', requests: [] })],
    [
      'an invalid inner request',
      () => ({ type: 'StepRequests', requests: [request('a', 0, { seqLen: 0 })] }),
    ],
    [
      'an item signed on its own',
      () => ({
        type: 'StepResults',
        results: [{ startPos: 0, seqLen: 1, result: result('a', 0, { signature: new Uint8Array(64) }) }],
      }),
    ],
    [
      'an item of no positions',
      () => ({ type: 'StepResults', results: [{ startPos: 0, seqLen: 0, result: result('a', 0) }] }),
    ],
    [
      'a short batch signature',
      () => ({
        type: 'StepResults',
        results: [{ startPos: 0, seqLen: 1, result: result('a', 0) }],
        signature: new Uint8Array(10),
      }),
    ],
  ]
  test.each(invalid)('refuses to send %s', (_, make) => {
    expectWireError(() => encodeMessage(make()), 'ERR_WIRE_PAYLOAD')
  })
})

describe('batch signatures', () => {
  const peer = generateIdentity()
  const fields: StepSigningFields[] = [
    { generationId: 'a', stepIndex: 0, startPos: 0, seqLen: 1, output: { hidden: Float32Array.of(1, 2) } },
    { generationId: 'b', stepIndex: 5, startPos: 5, seqLen: 1, output: { hidden: Float32Array.of(3, 4) } },
  ]

  test('bind every result, its order and the mesh; never valid as a single step signature', () => {
    const sig = signResults(peer, MESH, fields)
    expect(verifyResults(peer.publicKey, MESH, fields, sig)).toBe(true)
    const tampered = [
      fields[0],
      { ...fields[1], output: { hidden: Float32Array.of(3, 4.5) } },
    ] as StepSigningFields[]
    expect(verifyResults(peer.publicKey, MESH, tampered, sig)).toBe(false)
    expect(verifyResults(peer.publicKey, MESH, [...fields].reverse(), sig)).toBe(false)
    expect(verifyResults(peer.publicKey, MESH, fields.slice(0, 1), sig)).toBe(false)
    expect(verifyResults(peer.publicKey, 'other', fields, sig)).toBe(false)
    expect(
      verifyResults(
        peer.publicKey,
        MESH,
        [{ ...(fields[0] as StepSigningFields), seqLen: 2 }, fields[1] as StepSigningFields],
        sig,
      ),
    ).toBe(false)
    expect(verifyResults(generateIdentity().publicKey, MESH, fields, sig)).toBe(false)
    // Domain separation both ways.
    const one = signResult(peer, { ...(fields[0] as StepSigningFields), mesh: MESH })
    expect(verifyResults(peer.publicKey, MESH, fields.slice(0, 1), one)).toBe(false)
    const batchOfOne = signResults(peer, MESH, fields.slice(0, 1))
    expect(
      verifyResult(peer.publicKey, { ...(fields[0] as StepSigningFields), mesh: MESH }, batchOfOne),
    ).toBe(false)
    expect(stepBatchSigningBytes(MESH, fields.slice(0, 1))).not.toEqual(
      stepSigningBytes({ ...(fields[0] as StepSigningFields), mesh: MESH }),
    )
  })
})

/**
 * A stage that holds its answers until `release()`, so the steps finish in one task as a batch
 * does; `all` settles once `n` steps are waiting.
 */
function heldStage(n: number): StageSession & { release(): void; all: Promise<void> } {
  const inner = fakeStage(false)
  const waiting: Array<() => void> = []
  let arrived = (): void => undefined
  const all = new Promise<void>((resolve) => {
    arrived = resolve
  })
  return {
    ...inner,
    all,
    async step(id: string, input: StageStepInput): Promise<StageStepOutput> {
      const held = new Promise<void>((resolve) => waiting.push(resolve))
      if (waiting.length === n) arrived()
      await held
      return inner.step(id, input)
    },
    release() {
      for (const w of waiting.splice(0)) w()
    },
  }
}

describe('RemoteStage and the stage host batch their messages', () => {
  const worker = generateIdentity()
  const N = 12
  const input = (i: number): StageStepInput => ({
    hidden: Float32Array.of(i, 1, 2, 3),
    seqLen: 1,
    startPos: 0,
  })

  async function run(signBatchWith: typeof worker) {
    const stage = heldStage(N)
    const conn = await connect({
      stage,
      sign: signerFor(worker),
      signBatch: (fs) => signResults(signBatchWith, MESH, fs),
    })
    const seen: string[] = []
    conn.onMessage((m) => seen.push(m.type === 'StepResults' ? `StepResults(${m.results.length})` : m.type))
    const coordinator = remote(conn, { verifyKey: worker.publicKey, mesh: MESH })
    const steps = Array.from({ length: N }, (_, i) => coordinator.step(`g${i}`, input(i)))
    await stage.all
    stage.release()
    return { steps, seen }
  }

  test('a batch of steps goes out as one StepRequests and comes back as one StepResults, signed once', async () => {
    const { steps, seen } = await run(worker)
    const outs = await Promise.all(steps)
    for (const [i, o] of outs.entries()) expect(Array.from(o.hidden ?? [])).toEqual([2 * i, 2, 4, 6])
    expect(seen).toEqual([`StepResults(${N})`])
  })

  test('a batch signed by another key fails every step in it', async () => {
    const { steps } = await run(generateIdentity())
    for (const s of steps) {
      const err = await rejection(s)
      expect(err.code).toBe('ERR_STAGE_REPLY')
      expect(err.message).toMatch(/wrongly signed batch/)
    }
  })

  test('a stage host without a batch signer answers each step signed alone', async () => {
    const stage = heldStage(3)
    const conn = await connect({ stage, sign: signerFor(worker) })
    const seen: string[] = []
    conn.onMessage((m) => seen.push(m.type))
    const coordinator = remote(conn, { verifyKey: worker.publicKey, mesh: MESH })
    const steps = Array.from({ length: 3 }, (_, i) => coordinator.step(`g${i}`, input(i)))
    await stage.all
    stage.release()
    expect((await Promise.all(steps)).length).toBe(3)
    expect(seen).toEqual(['StepResult', 'StepResult', 'StepResult'])
  })
})
