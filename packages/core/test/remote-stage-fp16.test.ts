import { describe, expect, test } from 'vitest'
import type { StageSession, StageStepInput } from '../src/engine/inference-backend.js'
import { generateIdentity } from '../src/identity/peer-identity.js'
import { signResult, verifyResult } from '../src/identity/step-signature.js'
import { fingerprintHidden } from '../src/verify/fingerprint.js'
import { FRAME_HEADER_BYTES } from '../src/wire/frame.js'
import { roundToFp16 } from '../src/wire/hidden-dtype.js'
import { encodeMessage, type StepRequest, type StepResult } from '../src/wire/messages.js'
import { Reassembler } from '../src/wire/reassembler.js'
import { connect, fakeStage, HIDDEN, MESH, rejection, remote, signerFor } from './remote-stage-helpers.js'

// A RemoteStage and a real stage host over the in-memory transport with fp16 hidden states.
// Tolerance: fp16 keeps 11 significant bits, so each value that crossed the wire once (input
// rounded by the coordinator, output rounded by the worker) is within 2^-11 relative of fp32 per
// rounding; this stage is linear, so the end-to-end bound is (1 + 2^-11)^2 (1 + 2^-24) - 1 < 2^-10 + 2^-20 relative.

const worker = generateIdentity()
const SCALE = 1.1

/** Multiplies its input by 1.1, so its output is not fp16-exact and the worker must round it. */
function scaling(requests: StageStepInput[]): StageSession {
  const base = fakeStage(false)
  return {
    ...base,
    async step(_id, input) {
      requests.push(input)
      return { hidden: (input.hidden as Float32Array).map((v) => v * SCALE) }
    },
  }
}

const x = Float32Array.of(0.1, -0.2, 0.3333, 1234.5678)
const fp32Reference = x.map((v) => v * SCALE)
const tol = 2 ** -10 + 2 ** -20

function expectClose(got: Float32Array | undefined, want: Float32Array): void {
  expect(got?.length).toBe(want.length)
  for (let i = 0; i < want.length; i++) {
    const w = want[i] as number
    expect(Math.abs((got?.[i] as number) - w)).toBeLessThanOrEqual(Math.abs(w) * tol)
  }
}

describe('RemoteStage with fp16 hidden states', () => {
  test('a signed fp16 step: the worker computes on fp32 values and answers fp16 within 2^-10 of fp32', async () => {
    const seen: StageStepInput[] = []
    const conn = await connect({ sign: signerFor(worker), stage: scaling(seen) })
    const stage = remote(conn, { verifyKey: worker.publicKey, mesh: MESH, hiddenDtype: 'fp16' })
    const out = await stage.step('g1', { hidden: x, seqLen: 1, startPos: 0 })
    // The worker's input is the coordinator's, rounded once: fp16 values, widened to fp32 for compute.
    expect(Array.from(seen[0]?.hidden ?? [])).toEqual(Array.from(roundToFp16(x)))
    expect(seen[0]?.hidden).toBeInstanceOf(Float32Array)
    expect(roundToFp16(out.hidden as Float32Array)).toBe(out.hidden)
    expectClose(out.hidden, fp32Reference)
    // The same stage over fp32 answers the exact product.
    const plain = remote(await connect({ stage: scaling([]) }))
    expect(Array.from((await plain.step('g1', { hidden: x, seqLen: 1, startPos: 0 })).hidden ?? [])).toEqual(
      Array.from(fp32Reference),
    )
  })

  test('fingerprint and fetch: the fingerprint is of the fp16 values the fetch returns', async () => {
    const conn = await connect({ sign: signerFor(worker), stage: scaling([]) })
    const stage = remote(conn, { verifyKey: worker.publicKey, mesh: MESH, hiddenDtype: 'fp16' })
    const out = await stage.step('g1', { hidden: x, seqLen: 1, startPos: 0, fingerprint: { challenge: 41 } })
    const fetched = await stage.fetchHidden('g1', 0)
    expect(roundToFp16(fetched)).toBe(fetched)
    expect(out.fingerprint).toEqual(fingerprintHidden(fetched, 1, HIDDEN, undefined, { challenge: 41 }))
    // The plain step answers the very same values.
    const again = await stage.step('g2', { hidden: x, seqLen: 1, startPos: 0 })
    expect(Array.from(again.hidden ?? [])).toEqual(Array.from(fetched))
  })

  test('the first stage asks for fp16 with tokens only', async () => {
    const asked: StepRequest[] = []
    const conn = await connect({
      peer: (c) =>
        c.onMessage((msg) => {
          if (msg.type !== 'StepRequest') return
          asked.push(msg)
          const hidden = roundToFp16(Float32Array.of(0.1, 0.2, 0.3, 0.4))
          void c.send({ type: 'StepResult', generationId: 'g1', stepIndex: 0, hidden, hiddenDtype: 'fp16' })
        }),
    })
    const first = remote(conn, { isFirst: true, hiddenDtype: 'fp16' })
    await first.step('g1', { tokens: [1], seqLen: 1, startPos: 0 })
    expect([asked[0]?.hiddenDtype, asked[0]?.hidden]).toEqual(['fp16', undefined])
  })

  test('an fp32 answer to an fp16 request is refused (ERR_STAGE_REPLY)', async () => {
    const conn = await connect({
      peer: (c) =>
        c.onMessage((msg) => {
          if (msg.type !== 'StepRequest') return
          void c.send({
            type: 'StepResult',
            generationId: 'g1',
            stepIndex: 0,
            hidden: Float32Array.of(1, 2, 3, 4),
          })
        }),
    })
    const err = await rejection(
      remote(conn, { hiddenDtype: 'fp16' }).step('g1', { hidden: x, seqLen: 1, startPos: 0 }),
    )
    expect(err.code).toBe('ERR_STAGE_REPLY')
    expect(err.message).toMatch(/fp32 hidden state where fp16 was asked/)
  })

  test('a peer that signs one fp16 state and sends a neighbouring one fails verification', async () => {
    const signed = roundToFp16(Float32Array.of(1, 2, 3, 4))
    const sent = Float32Array.from(signed)
    sent[2] = 3.001953125 // the next fp16 after 3
    const conn = await connect({
      peer: (c) =>
        c.onMessage((msg) => {
          if (msg.type !== 'StepRequest') return
          const fields = { mesh: MESH, generationId: 'g1', stepIndex: 0, startPos: 0, seqLen: 1 }
          const signature = signResult(worker, { ...fields, output: { hidden: signed, hiddenDtype: 'fp16' } })
          void c.send({
            type: 'StepResult',
            generationId: 'g1',
            stepIndex: 0,
            hidden: sent,
            hiddenDtype: 'fp16',
            signature,
          })
        }),
    })
    const stage = remote(conn, { verifyKey: worker.publicKey, mesh: MESH, hiddenDtype: 'fp16' })
    const err = await rejection(stage.step('g1', { hidden: x, seqLen: 1, startPos: 0 }))
    expect(err.message).toMatch(/wrongly signed/)
  })
})

describe('step signatures over fp16 hidden states', () => {
  const fields = { mesh: MESH, generationId: 'g1', stepIndex: 0, startPos: 0, seqLen: 1 }
  const hidden = roundToFp16(Float32Array.from({ length: 64 }, (_, i) => Math.cos(i) * 3))
  const output = { hidden, hiddenDtype: 'fp16' as const }
  const signature = signResult(worker, { ...fields, output })

  function received(bytes: Uint8Array): StepResult {
    return new Reassembler().push(bytes) as StepResult
  }

  test('cover the fp16 payload: any flipped payload bit fails, the untouched message verifies', () => {
    const frame = encodeMessage({
      type: 'StepResult',
      generationId: 'g1',
      stepIndex: 0,
      ...output,
      signature,
    })[0] as Uint8Array
    const ok = received(frame)
    expect(verifyResult(worker.publicKey, { ...fields, output: ok }, signature)).toBe(true)
    // The fp16 payload starts after the id (4), stepIndex, counts, tag (16) and logSumExp (8).
    const payloadAt = FRAME_HEADER_BYTES + 4 + 16 + 8
    for (const at of [payloadAt, payloadAt + 1, payloadAt + 77, payloadAt + 127]) {
      const tampered = frame.slice()
      tampered[at] = (tampered[at] as number) ^ 0x01
      const msg = received(tampered)
      expect(verifyResult(worker.publicKey, { ...fields, output: msg }, signature), `byte ${at}`).toBe(false)
    }
  })

  test('bind the dtype: the same values claimed as fp32 do not verify, nor do values fp16 cannot hold', () => {
    expect(verifyResult(worker.publicKey, { ...fields, output: { hidden } }, signature)).toBe(false)
    const inexact = Float32Array.from(hidden)
    inexact[0] = 0.1
    expect(
      verifyResult(
        worker.publicKey,
        { ...fields, output: { hidden: inexact, hiddenDtype: 'fp16' } },
        signature,
      ),
    ).toBe(false)
    expect(() => signResult(worker, { ...fields, output: { hidden: inexact, hiddenDtype: 'fp16' } })).toThrow(
      /fp16/,
    )
  })
})
