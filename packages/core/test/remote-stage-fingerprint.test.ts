import { describe, expect, test } from 'vitest'
import { generateIdentity } from '../src/identity/peer-identity.js'
import { signResult } from '../src/identity/step-signature.js'
import { firstDisagreeingRow } from '../src/verify/compare-hidden.js'
import { fingerprintHidden } from '../src/verify/fingerprint.js'
import { encodeFingerprint } from '../src/verify/fingerprint-codec.js'
import type { StepResult } from '../src/wire/messages.js'
import { connect, HIDDEN, input, MESH, rejection, remote, signerFor } from './remote-stage-helpers.js'

// Fingerprint voting's wire round trip: StepRequest with a challenge, a fingerprint back, and the
// full state fetched afterwards, signed, from a real stage host; then peers that cheat at it.

const worker = generateIdentity()
const doubled = Float32Array.of(2, 4, 6, 8)

describe('RemoteStage fingerprint asks and fetches', () => {
  test('a fingerprint ask gets the fingerprint of the output; a fetch gets the output, both signed', async () => {
    const stage = remote(await connect({ sign: signerFor(worker) }), {
      verifyKey: worker.publicKey,
      mesh: MESH,
    })
    const out = await stage.step('g1', { ...input(), fingerprint: { challenge: 77 } })
    expect(out.hidden).toBeUndefined()
    expect(out.fingerprint).toEqual(fingerprintHidden(doubled, 1, HIDDEN, undefined, { challenge: 77 }))
    expect(Array.from(await stage.fetchHidden('g1', 0))).toEqual(Array.from(doubled))
    // The kept state is gone once the generation moves on.
    expect(Array.from((await stage.step('g1', input(1))).hidden ?? [])).toEqual(Array.from(doubled))
    expect((await rejection(stage.fetchHidden('g1', 0))).code).toBe('ERR_HIDDEN_UNAVAILABLE')
  })

  test('a fingerprint of a 16-row step covers all 16 rows, and locates a lie on one of them', async () => {
    const stage = remote(await connect({ sign: signerFor(worker) }), {
      verifyKey: worker.publicKey,
      mesh: MESH,
    })
    const hidden = Float32Array.from({ length: 16 * HIDDEN }, (_, i) => Math.sin(i) + 2)
    const out = await stage.step('g1', { hidden, seqLen: 16, startPos: 0, fingerprint: { challenge: 3 } })
    const fp = out.fingerprint
    expect(fp?.rows.map((r) => r.position)).toEqual(Array.from({ length: 16 }, (_, i) => i))
    if (fp === undefined) return
    const full = await stage.fetchHidden('g1', 0)
    const tol = { relative: 1e-3, indexOverlap: 0.75 }
    expect(firstDisagreeingRow(full, fp, tol)).toBe(-1)
    const lie = Float32Array.from(full)
    lie[11 * HIDDEN + 2] = (lie[11 * HIDDEN + 2] as number) * 1.5
    expect(firstDisagreeingRow(lie, fp, tol)).toBe(11)
  })

  test('the host keeps only the latest fingerprinted step, and only for its own connection', async () => {
    const stage = remote(await connect({}))
    await stage.step('g1', { ...input(0), fingerprint: { challenge: 1 } })
    await stage.step('g1', { ...input(1), fingerprint: { challenge: 2 } })
    expect((await rejection(stage.fetchHidden('g1', 0))).code).toBe('ERR_HIDDEN_UNAVAILABLE')
    expect(Array.from(await stage.fetchHidden('g1', 1))).toEqual(Array.from(doubled))
    stage.endGeneration('g1')
    expect((await rejection(stage.fetchHidden('g1', 1))).code).toBe('ERR_HIDDEN_UNAVAILABLE')
  })

  test('the last stage answers a fingerprint ask with token rows; FetchHidden is unsupported there', async () => {
    const last = remote(await connect({ isLast: true, sign: signerFor(worker) }), {
      isLast: true,
      verifyKey: worker.publicKey,
      mesh: MESH,
    })
    const out = await last.step('g1', { ...input(), fingerprint: { challenge: 1 } })
    expect(out.topk).toBeUndefined()
    expect(out.tokenRows?.seqLen).toBe(1)
    expect(Array.from(out.tokenRows?.ids ?? [])).toEqual([10, 3])
    const err = await rejection(last.fetchHidden('g1', 0))
    expect(err.code).toBe('ERR_HIDDEN_UNAVAILABLE')
    expect(err.message).toMatch(/last stage/)
    expect(Array.from((await last.step('g2', input())).topk?.ids ?? [])).toEqual([7, 3])
  })

  /** Replies a cheating peer sends to a StepRequest (and to a FetchHidden, as `fetched`). */
  const fp = (challenge: number, values = doubled) =>
    encodeFingerprint(fingerprintHidden(values, 1, HIDDEN, undefined, { challenge }))
  type Reply = Omit<StepResult, 'type' | 'generationId' | 'stepIndex' | 'signature'>
  const cheats: Array<[string, (challenge: number | undefined) => Reply, Reply | undefined, RegExp]> = [
    [
      'a fingerprint nobody asked for',
      () => ({ hidden: doubled, fingerprint: fp(0) }),
      undefined,
      /nobody asked/,
    ],
    ['the full state when a fingerprint was asked', () => ({ hidden: doubled }), undefined, /no fingerprint/],
    [
      'a fingerprint under another challenge',
      (c) => ({ fingerprint: fp((c ?? 0) + 1) }),
      undefined,
      /challenge/,
    ],
    ['a malformed fingerprint', () => ({ fingerprint: Uint8Array.of(1, 2, 3) }), undefined, /malformed/],
    [
      'a fetched state of the wrong length',
      (c) => ({ fingerprint: fp(c ?? 0) }),
      { hidden: Float32Array.of(1) },
      /wrong shape/,
    ],
  ]
  test.each(cheats)('refuses %s with ERR_STAGE_REPLY', async (_, onStep, onFetch, message) => {
    const conn = await connect({
      peer: (c) =>
        c.onMessage((msg) => {
          if (msg.type !== 'StepRequest' && msg.type !== 'FetchHidden') return
          const body = msg.type === 'StepRequest' ? onStep(msg.fingerprintChallenge) : onFetch
          if (body === undefined) return
          const startPos = msg.stepIndex
          const signature = signResult(worker, {
            mesh: MESH,
            generationId: msg.generationId,
            stepIndex: msg.stepIndex,
            startPos,
            seqLen: 1,
            output: body,
          })
          void c.send({
            type: 'StepResult',
            generationId: msg.generationId,
            stepIndex: msg.stepIndex,
            ...body,
            signature,
          })
        }),
    })
    const stage = remote(conn, { verifyKey: worker.publicKey, mesh: MESH })
    const asked = message.source.includes('nobody asked')
      ? input()
      : { ...input(), fingerprint: { challenge: 5 } }
    const run = async () => {
      await stage.step('g1', asked)
      await stage.fetchHidden('g1', 0)
    }
    const err = await rejection(run())
    expect(err.code).toBe('ERR_STAGE_REPLY')
    expect(err.message).toMatch(message)
  })
})
