import type { TopKLogits } from '../base/top-k-logits.js'
import { IdentityError } from '../errors.js'
import { type HiddenDtype, roundToFp16, valuesToFp16 } from '../wire/hidden-dtype.js'
import { createSha256, type PeerIdentity, signBytes, verifyBytes } from './peer-identity.js'

/**
 * Signatures over step results, so every answer (and every vote built from answers) is
 * attributable to the key that produced it. The signed bytes are a canonical encoding:
 *
 *   u8 17, 'butterfly-step-v1'      domain tag: a step signature is never valid as anything else
 *   u8 n, mesh (UTF-8)              binds the result to one mesh...
 *   u8 n, generationId (UTF-8)      ...one generation...
 *   u32 stepIndex, u32 startPos, u32 seqLen (little-endian)     ...and one step
 *   32 bytes stepOutputDigest(output)
 *
 * The digest covers every part of the output present, each tagged and length-prefixed:
 *   hidden       u8 1, u32 n, f32[n]           (fp32 on the wire)
 *                u8 4, u32 n, fp16[n]          (fp16 on the wire: the very bytes that travel)
 *   topk         u8 2, u32 n, f32[n] values, i32[n] ids, f64 logSumExp
 *   fingerprint  u8 3, u32 n, n bytes
 * Numbers are hashed as their little-endian bytes, exactly as they cross the wire.
 */

export const STEP_SIGNATURE_TAG = 'butterfly-step-v1'

/** What a step produced; at least one part must be present. */
export interface StepOutput {
  readonly hidden?: Float32Array | undefined
  /** How `hidden` travels; absent means fp32. With fp16 every value must be an fp16 value. */
  readonly hiddenDtype?: HiddenDtype | undefined
  readonly topk?: TopKLogits | undefined
  /** Opaque, defined by the verification layer. */
  readonly fingerprint?: Uint8Array | undefined
}

/** The step fields a stage host knows; the signer adds the mesh it joined. */
export interface StepSigningFields {
  readonly generationId: string
  readonly stepIndex: number
  readonly startPos: number
  readonly seqLen: number
  readonly output: StepOutput
}

export interface StepResultFields extends StepSigningFields {
  readonly mesh: string
}

/** Signs a step result for the stage host (see StageHostOptions.sign). */
export type StepSigner = (fields: StepSigningFields) => Uint8Array

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1
const encoder = new TextEncoder()
const TAG_BYTES = encoder.encode(STEP_SIGNATURE_TAG)

export function signResult(identity: PeerIdentity, fields: StepResultFields): Uint8Array {
  return signBytes(identity, stepSigningBytes(fields))
}

/** False for a wrong signature and for anything malformed (fields, key or signature); never throws. */
export function verifyResult(
  publicKey: Uint8Array,
  fields: StepResultFields,
  signature: Uint8Array,
): boolean {
  let message: Uint8Array
  try {
    message = stepSigningBytes(fields)
  } catch {
    return false
  }
  return verifyBytes(publicKey, message, signature)
}

/**
 * One signature over the results of a batched run (the wire's StepResults):
 *
 *   u8 18, 'butterfly-steps-v1'     domain tag, distinct from a single step's
 *   u8 n, mesh (UTF-8)
 *   u32 count
 *   count x 32 bytes                SHA-256 of each result's single-step signing bytes, in order
 *
 * so every result in the batch is bound exactly as a signature of its own would bind it.
 */
export const STEP_BATCH_SIGNATURE_TAG = 'butterfly-steps-v1'

/** Signs a batch of step results for the stage host (see StageHostOptions.signBatch). */
export type StepBatchSigner = (fields: readonly StepSigningFields[]) => Uint8Array

export function signResults(
  identity: PeerIdentity,
  mesh: string,
  fields: readonly StepSigningFields[],
): Uint8Array {
  return signBytes(identity, stepBatchSigningBytes(mesh, fields))
}

/** False for a wrong signature and for anything malformed; never throws. */
export function verifyResults(
  publicKey: Uint8Array,
  mesh: string,
  fields: readonly StepSigningFields[],
  signature: Uint8Array,
): boolean {
  let message: Uint8Array
  try {
    message = stepBatchSigningBytes(mesh, fields)
  } catch {
    return false
  }
  return verifyBytes(publicKey, message, signature)
}

export function stepBatchSigningBytes(mesh: string, fields: readonly StepSigningFields[]): Uint8Array {
  if (!Array.isArray(fields) || fields.length < 1) throw bad('a batch signature covers at least one step')
  const tag = encoder.encode(STEP_BATCH_SIGNATURE_TAG)
  const meshBytes = shortString(mesh, 'mesh')
  const out = new Uint8Array(2 + tag.length + meshBytes.length + 4 + 32 * fields.length)
  let at = 0
  for (const b of [tag, meshBytes]) {
    out[at++] = b.length
    out.set(b, at)
    at += b.length
  }
  new DataView(out.buffer).setUint32(at, fields.length, true)
  at += 4
  for (const f of fields) {
    const h = createSha256()
    h.update(stepSigningBytes({ ...f, mesh }))
    out.set(h.digest(), at)
    at += 32
  }
  return out
}

/** The canonical bytes a step signature covers. */
export function stepSigningBytes(fields: StepResultFields): Uint8Array {
  if (typeof fields !== 'object' || fields === null) throw bad('step fields must be an object')
  const tag = TAG_BYTES
  const mesh = shortString(fields.mesh, 'mesh')
  const gen = shortString(fields.generationId, 'generationId')
  const digest = stepOutputDigest(fields.output)
  const out = new Uint8Array(3 + tag.length + mesh.length + gen.length + 12 + digest.length)
  const view = new DataView(out.buffer)
  let at = 0
  for (const s of [tag, mesh, gen]) {
    out[at++] = s.length
    out.set(s, at)
    at += s.length
  }
  for (const key of ['stepIndex', 'startPos', 'seqLen'] as const) {
    view.setUint32(at, u32(fields[key], key), true)
    at += 4
  }
  out.set(digest, at)
  return out
}

/** SHA-256 over the tagged parts of a step output (see the layout above). */
export function stepOutputDigest(output: StepOutput): Uint8Array {
  if (typeof output !== 'object' || output === null) throw bad('step output must be an object')
  const { hidden, topk, fingerprint } = output
  if (hidden === undefined && topk === undefined && fingerprint === undefined) {
    throw bad('step output needs hidden, topk or a fingerprint')
  }
  // The backend's SHA-256 when it has one (node:crypto): same digest, a tenth of the time.
  const h = createSha256()
  const head = (tag: number, n: number) => {
    const b = new Uint8Array(5)
    b[0] = tag
    new DataView(b.buffer).setUint32(1, n, true)
    h.update(b)
  }
  if (hidden !== undefined) {
    if (!(hidden instanceof Float32Array)) throw bad('output.hidden must be a Float32Array')
    if (output.hiddenDtype === 'fp16') {
      // A value fp16 cannot hold never travelled as fp16, so nothing can have signed it.
      if (roundToFp16(hidden) !== hidden) throw bad('output.hidden holds values that are not fp16 values')
      head(4, hidden.length)
      h.update(valuesToFp16(hidden))
    } else {
      if (output.hiddenDtype !== undefined && output.hiddenDtype !== 'fp32') throw bad('unknown hiddenDtype')
      head(1, hidden.length)
      h.update(leBytes(hidden))
    }
  }
  if (topk !== undefined) {
    const { values, ids, logSumExp } = (topk ?? {}) as Partial<TopKLogits>
    if (!(values instanceof Float32Array) || !(ids instanceof Int32Array) || ids.length !== values.length) {
      throw bad('output.topk needs Float32Array values and as many Int32Array ids')
    }
    if (typeof logSumExp !== 'number') throw bad('output.topk.logSumExp must be a number')
    head(2, values.length)
    h.update(leBytes(values))
    h.update(leBytes(ids))
    const lse = new Uint8Array(8)
    new DataView(lse.buffer).setFloat64(0, logSumExp, true)
    h.update(lse)
  }
  if (fingerprint !== undefined) {
    if (!(fingerprint instanceof Uint8Array)) throw bad('output.fingerprint must be a Uint8Array')
    head(3, fingerprint.length)
    h.update(fingerprint)
  }
  return h.digest()
}

function leBytes(a: Float32Array | Int32Array): Uint8Array {
  if (LITTLE_ENDIAN_HOST) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
  const out = new Uint8Array(a.byteLength)
  const view = new DataView(out.buffer)
  for (let i = 0; i < a.length; i++) {
    if (a instanceof Float32Array) view.setFloat32(i * 4, a[i] as number, true)
    else view.setInt32(i * 4, a[i] as number, true)
  }
  return out
}

function shortString(v: unknown, field: string): Uint8Array {
  if (typeof v !== 'string') throw bad(`${field} must be a string`)
  const bytes = encoder.encode(v)
  if (bytes.length < 1 || bytes.length > 255) throw bad(`${field} must be 1..255 UTF-8 bytes`)
  return bytes
}

function u32(v: unknown, field: string): number {
  if (!(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff)) {
    throw bad(`${field} must be a u32, got ${String(v)}`)
  }
  return v
}

function bad(message: string): IdentityError {
  return new IdentityError('ERR_IDENTITY_INPUT', message)
}
