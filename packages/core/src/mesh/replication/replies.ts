import { randomBytes } from '@noble/hashes/utils.js'
import type { TopKLogits } from '../../base/top-k-logits.js'
import type { StageStepOutput } from '../../engine/inference-backend.js'
import type { HiddenReply } from '../../verify/vote.js'
import type { Member } from './replica-set.js'

/** One replica's answer to a step, as the vote sees it. */
export interface Reply {
  readonly m: Member
  readonly out: StageStepOutput
  /** The full state fetched after the replica answered with a fingerprint. */
  full?: Float32Array
}

export function hiddenReply({ m, out, full }: Reply): HiddenReply {
  const state = full ?? out.hidden
  return {
    peerId: m.peerId,
    cls: m.cls,
    ...(state instanceof Float32Array ? { full: state } : {}),
    ...(out.fingerprint !== undefined ? { fingerprint: out.fingerprint } : {}),
  }
}

/** A u32 from a cryptographic source: challenges must be unguessable by the replicas. */
export function randomChallenge(): number {
  const b = randomBytes(4)
  return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true)
}

/** Greedy pick, refusing a malformed top-k (the coordinator's Sampler would throw on it later). */
export function argmaxToken(topk: TopKLogits): number {
  const { values, ids } = topk
  if (!(values instanceof Float32Array && ids instanceof Int32Array) || values.length === 0) return -1
  if (ids.length !== values.length) return -1
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number
    if (Number.isNaN(v) || (i > 0 && v > (values[i - 1] as number))) return -1
  }
  return ids[0] as number
}
