import { describe, expect, test } from 'vitest'
import { generateIdentity } from '../src/identity/peer-identity.js'
import { signResult } from '../src/identity/step-signature.js'
import { fingerprintHidden } from '../src/verify/fingerprint.js'
import { encodeFingerprint } from '../src/verify/fingerprint-codec.js'
import { encodeTokenRows, MAX_TOKEN_ROWS, type TokenRows, tokenAgrees } from '../src/verify/token-rows.js'
import { MAX_FINGERPRINT_BYTES, type StepResult } from '../src/wire/messages.js'
import { connect, HIDDEN, MESH, rejection, remote, signerFor } from './remote-stage-helpers.js'

// The last stage's side of fingerprint voting across a real MessageConnection: a challenge on a
// window of w positions comes back as token rows (the top-2 of every position) from a real stage
// host; a hostile peer's token rows are refused with ERR_STAGE_REPLY.

const worker = generateIdentity()
const windowInput = (seqLen: number, startPos = 0) => ({
  hidden: new Float32Array(seqLen * HIDDEN).fill(1),
  seqLen,
  startPos,
  fingerprint: { challenge: 9 },
})

function rowsOf(seqLen: number, id = (r: number) => 10 + r): TokenRows {
  return {
    seqLen,
    ids: Int32Array.from({ length: 2 * seqLen }, (_, i) => (i % 2 === 0 ? id(i / 2) : 3)),
    values: Float32Array.from({ length: 2 * seqLen }, (_, i) => (i % 2 === 0 ? 2 : 1)),
    logSumExp: new Float32Array(seqLen).fill(2.5),
  }
}

describe('RemoteStage token rows from the last stage', () => {
  test('a 16-position window comes back as 16 token rows, signed, whose argmax is each position', async () => {
    const last = remote(await connect({ isLast: true, sign: signerFor(worker) }), {
      isLast: true,
      verifyKey: worker.publicKey,
      mesh: MESH,
    })
    const out = await last.step('g1', windowInput(16))
    const rows = out.tokenRows as TokenRows
    expect(rows.seqLen).toBe(16)
    for (let p = 0; p < 16; p++) {
      expect(tokenAgrees(rows, p, 10 + p)).toBe(true)
      expect(tokenAgrees(rows, p, 11 + p)).toBe(false)
    }
  })

  /** Replies a hostile last stage sends to a StepRequest with a challenge. */
  type Reply = Omit<StepResult, 'type' | 'generationId' | 'stepIndex' | 'signature'>
  const bad = (edit: (b: Uint8Array, dv: DataView) => void): Uint8Array => {
    const b = encodeTokenRows(rowsOf(4))
    edit(b, new DataView(b.buffer))
    return b
  }
  const cheats: Array<[string, Reply, RegExp]> = [
    ['token rows of another length', { fingerprint: encodeTokenRows(rowsOf(3)) }, /another length/],
    [
      'a hidden-state fingerprint',
      { fingerprint: encodeFingerprint(fingerprintHidden(new Float32Array(4 * HIDDEN).fill(1), 4, HIDDEN)) },
      /malformed token rows.*magic/,
    ],
    [
      'top-k instead of token rows',
      { topk: { values: Float32Array.of(1), ids: Int32Array.of(1), logSumExp: 1 } },
      /no fingerprint/,
    ],
    ['bytes cut short', { fingerprint: encodeTokenRows(rowsOf(4)).subarray(0, 50) }, /malformed/],
    ['a trailing byte', { fingerprint: Uint8Array.from([...encodeTokenRows(rowsOf(4)), 0]) }, /malformed/],
    ['seqLen 0', { fingerprint: bad((_, dv) => dv.setUint32(4, 0, true)) }, /malformed/],
    ['an unknown version', { fingerprint: bad((b) => (b[3] = 2)) }, /malformed.*version/],
    [
      'a NaN value',
      { fingerprint: bad((_, dv) => dv.setFloat32(8 + 8, Number.NaN, true)) },
      /malformed.*finite/,
    ],
    [
      'an infinite logSumExp',
      { fingerprint: bad((_, dv) => dv.setFloat32(8 + 16, Number.POSITIVE_INFINITY, true)) },
      /malformed/,
    ],
    [
      'a pair not descending',
      { fingerprint: bad((_, dv) => dv.setFloat32(8 + 12, 5, true)) },
      /malformed.*descending/,
    ],
    [
      'a negative id',
      { fingerprint: bad((_, dv) => dv.setInt32(8 + 20, -1, true)) },
      /malformed.*non-negative/,
    ],
    [
      'the same id twice',
      { fingerprint: bad((_, dv) => dv.setInt32(8 + 4, 10, true)) },
      /malformed.*distinct/,
    ],
    [
      'token rows over the cap',
      { fingerprint: Uint8Array.from([...encodeTokenRows(rowsOf(MAX_TOKEN_ROWS)), ...new Uint8Array(20)]) },
      /malformed.*exceed/,
    ],
    [
      'the largest fingerprint the wire carries',
      { fingerprint: new Uint8Array(MAX_FINGERPRINT_BYTES).fill(0x42) },
      /malformed/,
    ],
  ]
  test.each(cheats)('refuses %s with ERR_STAGE_REPLY, and keeps serving', async (_, body, message) => {
    const conn = await connect({
      peer: (c) =>
        c.onMessage((msg) => {
          if (msg.type !== 'StepRequest') return
          const reply: Reply =
            msg.fingerprintChallenge === undefined
              ? { topk: { values: Float32Array.of(2, 1), ids: Int32Array.of(7, 3), logSumExp: 2.5 } }
              : body
          const signature = signResult(worker, {
            mesh: MESH,
            generationId: msg.generationId,
            stepIndex: msg.stepIndex,
            startPos: msg.startPos,
            seqLen: msg.seqLen,
            output: reply,
          })
          void c.send({
            type: 'StepResult',
            generationId: msg.generationId,
            stepIndex: msg.stepIndex,
            ...reply,
            signature,
          })
        }),
    })
    const last = remote(conn, { isLast: true, verifyKey: worker.publicKey, mesh: MESH })
    const err = await rejection(last.step('g1', windowInput(4)))
    expect(err.code).toBe('ERR_STAGE_REPLY')
    expect(err.message).toMatch(message)
    // The connection survives the bad reply.
    const next = await last.step('g2', { hidden: new Float32Array(HIDDEN), seqLen: 1, startPos: 0 })
    expect(Array.from(next.topk?.ids ?? [])).toEqual([7, 3])
  })

  test('a window longer than the token rows cap is refused by the host with an error, not a crash', async () => {
    const last = remote(await connect({ isLast: true }), { isLast: true })
    // The host's error crosses the wire as {name, code, message} and is rebuilt.
    const err = await last.step('g1', windowInput(MAX_TOKEN_ROWS + 1)).catch((e: unknown) => e)
    expect(err).toMatchObject({ name: 'StageError', code: 'ERR_STAGE_REPLY' })
    expect((err as Error).message).toMatch(/at most 512/)
  })
})
