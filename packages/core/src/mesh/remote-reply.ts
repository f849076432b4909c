import type { StageStepOutput } from '../engine/inference-backend.js'
import { StageError } from '../errors.js'
import { verifyResult, verifyResults } from '../identity/step-signature.js'
import { decodeFingerprint } from '../verify/fingerprint-codec.js'
import { decodeTokenRows } from '../verify/token-rows.js'
import type { HiddenDtype } from '../wire/hidden-dtype.js'
import type { StepResult, StepResults } from '../wire/messages.js'

/** What a reply must carry: the stage's output, a fingerprint of it, or a fetched hidden state. */
export type Expect = 'output' | { readonly challenge: number } | 'fetched'

/** A request waiting for its reply. */
export interface Pending {
  readonly startPos: number
  readonly seqLen: number
  readonly expect: Expect
  /** Settles (never rejects) once the request is answered, failed or given up. */
  readonly done: Promise<void>
  resolve(out: StageStepOutput): void
  reject(err: unknown): void
}

/** The reply's output if it is what the request asked for, else the error to fail it with. */
export function replyOutput(
  init: {
    readonly peerId: string
    readonly hiddenSize: number
    readonly isLast: boolean
    readonly hiddenDtype?: HiddenDtype | undefined
  },
  msg: StepResult,
  p: { readonly seqLen: number; readonly expect: Expect },
): StageStepOutput | StageError {
  const wrong = (what: string) => new StageError('ERR_STAGE_REPLY', `peer ${init.peerId} sent ${what}`)
  const { hiddenSize } = init
  const [got, asked] = [msg.hiddenDtype ?? 'fp32', init.hiddenDtype ?? 'fp32']
  // Fingerprints are of the values as they travel: a state in another dtype is not comparable.
  if (msg.hidden !== undefined && got !== asked) return wrong(`${got} hidden state where ${asked} was asked`)
  if (p.expect === 'output') {
    if (msg.fingerprint !== undefined) return wrong('a fingerprint nobody asked for')
    if (init.isLast) return msg.topk !== undefined ? { topk: msg.topk } : wrong('the wrong output kind')
    if (msg.hidden === undefined) return wrong('the wrong output kind')
    return { hidden: msg.hidden }
  }
  if (p.expect === 'fetched') {
    if (msg.hidden?.length !== p.seqLen * hiddenSize || msg.fingerprint !== undefined) {
      return wrong('a fetched state of the wrong shape')
    }
    return { hidden: msg.hidden }
  }
  if (msg.fingerprint === undefined || msg.hidden !== undefined || msg.topk !== undefined) {
    return wrong('no fingerprint where one was asked for')
  }
  if (init.isLast) {
    try {
      const tokenRows = decodeTokenRows(msg.fingerprint)
      if (tokenRows.seqLen !== p.seqLen) return wrong('token rows of another length')
      return { tokenRows }
    } catch (err) {
      return wrong(`malformed token rows (${(err as Error).message})`)
    }
  }
  try {
    const fp = decodeFingerprint(msg.fingerprint)
    if (fp.seqLen !== p.seqLen || fp.hiddenSize !== hiddenSize || fp.challenge !== p.expect.challenge) {
      return wrong('a fingerprint of another shape or challenge')
    }
    return { fingerprint: fp }
  } catch (err) {
    return wrong(`a malformed fingerprint (${(err as Error).message})`)
  }
}

/** Who signs a stage's results: the answering peer's key, for one mesh (none: unchecked). */
interface Signer {
  readonly peerId: string
  readonly verifyKey?: Uint8Array | undefined
  readonly mesh?: string | undefined
}

/** Why a single result's signature is refused, if it is. */
export function resultSignatureError(
  init: Signer,
  msg: StepResult,
  p: { readonly startPos: number; readonly seqLen: number },
): StageError | undefined {
  const { verifyKey, mesh } = init
  if (verifyKey === undefined || mesh === undefined) return undefined
  const { generationId, stepIndex } = msg
  const fields = { mesh, generationId, stepIndex, startPos: p.startPos, seqLen: p.seqLen, output: msg }
  if (msg.signature !== undefined && verifyResult(verifyKey, fields, msg.signature)) return undefined
  const why = msg.signature === undefined ? 'an unsigned' : 'a wrongly signed'
  return new StageError('ERR_STAGE_REPLY', `peer ${init.peerId} sent ${why} result`)
}

/** Why a batch's one signature is refused, if it is (a bad one fails every step in it). */
export function batchSignatureError(init: Signer, msg: StepResults): StageError | undefined {
  const { verifyKey, mesh } = init
  if (verifyKey === undefined || mesh === undefined) return undefined
  const fields = msg.results.map((i) => ({
    generationId: i.result.generationId,
    stepIndex: i.result.stepIndex,
    startPos: i.startPos,
    seqLen: i.seqLen,
    output: i.result,
  }))
  if (msg.signature !== undefined && verifyResults(verifyKey, mesh, fields, msg.signature)) return undefined
  const why = msg.signature === undefined ? 'an unsigned' : 'a wrongly signed'
  return new StageError('ERR_STAGE_REPLY', `peer ${init.peerId} sent ${why} batch of results`)
}
