import { describe, expect, test } from 'vitest'
import { StageError } from '../src/errors.js'
import { generateIdentity } from '../src/identity/peer-identity.js'
import { type StepSigner, signResult } from '../src/identity/step-signature.js'
import { connect, input, MESH, rejection, remote, signerFor } from './remote-stage-helpers.js'

describe('RemoteStage with a verify key', () => {
  const worker = generateIdentity()

  test('accepts results the peer signed, hidden and top-k', async () => {
    const stage = remote(await connect({ sign: signerFor(worker) }), {
      verifyKey: worker.publicKey,
      mesh: MESH,
    })
    const out = await stage.step('g1', input())
    expect(Array.from(out.hidden ?? [])).toEqual([2, 4, 6, 8])
    expect(Array.from((await stage.step('g1', input(1))).hidden ?? [])).toEqual([2, 4, 6, 8])

    const conn = await connect({ sign: signerFor(worker), isLast: true })
    const last = remote(conn, { verifyKey: worker.publicKey, mesh: MESH, isLast: true })
    expect(Array.from((await last.step('g2', input())).topk?.ids ?? [])).toEqual([7, 3])
  })

  test('without a verify key, unsigned results are still accepted', async () => {
    const stage = remote(await connect({}))
    expect(Array.from((await stage.step('g1', input())).hidden ?? [])).toEqual([2, 4, 6, 8])
  })

  const refused: Array<[string, () => StepSigner | undefined, RegExp]> = [
    ['an unsigned result', () => undefined, /unsigned/],
    ['a result signed by another key', () => signerFor(generateIdentity()), /wrongly signed/],
    ['a result signed for another mesh', () => signerFor(worker, 'other-mesh'), /wrongly signed/],
    ['a garbage signature', () => () => new Uint8Array(64).fill(7), /wrongly signed/],
  ]
  test.each(refused)('rejects %s with ERR_STAGE_REPLY', async (_, signer, message) => {
    const sign = signer()
    const stage = remote(await connect(sign ? { sign } : {}), { verifyKey: worker.publicKey, mesh: MESH })
    const err = await rejection(stage.step('g1', input()))
    expect(err.code).toBe('ERR_STAGE_REPLY')
    expect(err.message).toMatch(message)
  })

  /** A peer that signs one thing and sends another. */
  const lies: Array<
    [string, (req: { stepIndex: number; startPos: number }) => { sigStep: number; hidden: Float32Array }]
  > = [
    [
      'tampers with the output after signing',
      (r) => ({ sigStep: r.stepIndex, hidden: Float32Array.of(2, 4, 6, 9) }),
    ],
    [
      'replays a signature from another step',
      (r) => ({ sigStep: r.stepIndex + 1, hidden: Float32Array.of(2, 4, 6, 8) }),
    ],
  ]
  test.each(lies)('rejects a peer that %s', async (_, lie) => {
    const conn = await connect({
      peer: (c) =>
        c.onMessage((msg) => {
          if (msg.type !== 'StepRequest') return
          const { sigStep, hidden } = lie(msg)
          const honest = Float32Array.of(2, 4, 6, 8)
          const signature = signResult(worker, {
            mesh: MESH,
            generationId: msg.generationId,
            stepIndex: sigStep,
            startPos: sigStep,
            seqLen: msg.seqLen,
            output: { hidden: honest },
          })
          void c.send({
            type: 'StepResult',
            generationId: msg.generationId,
            stepIndex: msg.stepIndex,
            hidden,
            signature,
          })
        }),
    })
    const stage = remote(conn, { verifyKey: worker.publicKey, mesh: MESH })
    const err = await rejection(stage.step('g1', input(5)))
    expect(err.code).toBe('ERR_STAGE_REPLY')
    expect(err.message).toMatch(/wrongly signed/)
  })

  test('a refused result does not poison the next step', async () => {
    let signNext = false
    const sign: StepSigner = (f) => (signNext ? signerFor(worker)(f) : new Uint8Array(64))
    const stage = remote(await connect({ sign }), { verifyKey: worker.publicKey, mesh: MESH })
    expect((await rejection(stage.step('g1', input()))).code).toBe('ERR_STAGE_REPLY')
    signNext = true
    expect(Array.from((await stage.step('g1', input(1))).hidden ?? [])).toEqual([2, 4, 6, 8])
  })

  test.each([
    ['a short key', { verifyKey: new Uint8Array(31), mesh: MESH }],
    ['a key without the mesh', { verifyKey: worker.publicKey }],
  ])('refuses to construct with %s', async (_, over) => {
    const conn = await connect({})
    expect(() => remote(conn, over)).toThrow(StageError)
  })
})
