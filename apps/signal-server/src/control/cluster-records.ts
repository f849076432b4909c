import {
  fromBase64url,
  type PlanMessage,
  parseCapabilities,
  parsePeerId,
  parsePlanMessage,
  parseSignalEnvelope,
  peerIdFromPublicKey,
  type SignalData,
  type WireError,
} from '@butterfly/core'
import { ClusterError } from '../errors.js'
import type { MemberRecord, PeerEvidence } from './mesh-member.js'

// What servers of a cluster write to Redis and send each other. Another server is a peer of a
// kind too: everything it wrote is parsed here before this server acts on it.

const SERVER_ID = /^[A-Za-z0-9_-]{1,32}$/
const REASON = /^[a-z][a-z-]{0,31}$/

function bad(message: string): ClusterError {
  return new ClusterError('ERR_CLUSTER_PAYLOAD', message)
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function json(raw: string, what: string): unknown {
  try {
    return JSON.parse(raw)
  } catch {
    throw bad(`${what} is not JSON`)
  }
}

/** Rethrows core's ControlError (a field that does not parse) as ERR_CLUSTER_PAYLOAD. */
function parsed<T>(fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    if (err instanceof ClusterError) throw err
    throw bad(err instanceof Error ? err.message : String(err))
  }
}

export function parseServerId(v: unknown, field = 'server id'): string {
  if (typeof v !== 'string' || !SERVER_ID.test(v)) throw bad(`${field} must be 1-32 of A-Z a-z 0-9 _ -`)
  return v
}

/** A server's liveness key: the generation of its member lists (it changes on every join or leave). */
export function parseBeat(raw: string): { readonly gen: number } {
  const v = json(raw, 'server liveness')
  if (!isRecord(v) || !Number.isSafeInteger(v.gen) || (v.gen as number) < 0)
    throw bad('liveness.gen must be a count')
  return { gen: v.gen as number }
}

/**
 * A member record stored under `id`. A worker's record carries its key, and `id` must be the id
 * that key derives: a server cannot list a peer under someone else's identity.
 */
export function parseMemberRecord(
  id: string,
  raw: string,
): { readonly record: MemberRecord; readonly publicKey: Uint8Array | undefined } {
  const v = json(raw, `member ${id.slice(0, 64)}`)
  if (!isRecord(v)) throw bad('a member record must be an object')
  const peerId = parsed(() => parsePeerId(id, 'member id'))
  if (v.id !== peerId) throw bad(`member record ${peerId} names ${String(v.id).slice(0, 64)}`)
  const joinedAt = v.joinedAt
  if (typeof joinedAt !== 'number' || !Number.isSafeInteger(joinedAt) || joinedAt < 0)
    throw bad('member.joinedAt must be a time in ms')
  if (v.capabilities === undefined) {
    if (v.publicKey !== undefined) throw bad('a member without capabilities has no key')
    return { record: { id: peerId, joinedAt }, publicKey: undefined }
  }
  const capabilities = parsed(() => parseCapabilities(v.capabilities, 'member.capabilities'))
  const key =
    typeof v.publicKey === 'string' && v.publicKey.length <= 64 ? fromBase64url(v.publicKey) : undefined
  if (key === undefined || key.length !== 32) throw bad('member.publicKey must be base64url of 32 bytes')
  if (peerIdFromPublicKey(key) !== peerId) {
    throw new ClusterError('ERR_CLUSTER_SESSION', `member ${peerId} is listed under another peer's key`)
  }
  return { record: { id: peerId, joinedAt, capabilities, publicKey: v.publicKey as string }, publicKey: key }
}

export interface StoredPlan {
  /** The server that computed it (it held the lease). */
  readonly planner: string
  readonly plan: PlanMessage
  readonly error: WireError | undefined
}

function wireError(v: unknown): WireError | undefined {
  if (v === undefined || v === null) return undefined
  if (
    !isRecord(v) ||
    typeof v.name !== 'string' ||
    v.name.length > 64 ||
    typeof v.code !== 'string' ||
    !/^[A-Z0-9_]{1,64}$/.test(v.code) ||
    typeof v.message !== 'string' ||
    v.message.length > 2048
  ) {
    throw bad('plan.error must be {name, code, message}')
  }
  return { name: v.name, code: v.code, message: v.message }
}

/** The stored plan of `mesh`, which must name this mesh, its model and its model path. */
export function parseStoredPlan(
  raw: string,
  mesh: { readonly name: string; readonly modelId: string; readonly modelPath: string },
): StoredPlan {
  const v = json(raw, 'stored plan')
  if (!isRecord(v)) throw bad('a stored plan must be an object')
  const planner = parseServerId(v.planner, 'plan.planner')
  const plan = parsed(() => parsePlanMessage(v.plan))
  if (plan.mesh !== mesh.name || plan.modelId !== mesh.modelId || plan.modelPath !== mesh.modelPath) {
    throw bad(`the stored plan is for mesh "${plan.mesh.slice(0, 64)}", model "${plan.modelId.slice(0, 64)}"`)
  }
  return { planner, plan, error: wireError(v.error) }
}

export function storedPlanJson(planner: string, plan: PlanMessage, error: WireError | undefined): string {
  return JSON.stringify({ planner, plan, ...(error === undefined ? {} : { error }) })
}

export function parseExclusionReason(v: unknown): string {
  if (typeof v !== 'string' || !REASON.test(v)) throw bad('an exclusion reason must be 1-32 of a-z and -')
  return v
}

const MAX_COUNT = 2 ** 40

/** One server's counts of a peer's vote outcomes: `{"a": agreements, "d": disagreements}`. */
export function parsePeerEvidence(peerId: string, raw: string): PeerEvidence {
  parsed(() => parsePeerId(peerId, 'evidence peer'))
  const v = json(raw, `evidence of ${peerId.slice(0, 64)}`)
  const count = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= MAX_COUNT
  if (!isRecord(v) || !count(v.a) || !count(v.d)) throw bad('evidence must be {a, d}: two counts')
  return { agreements: v.a as number, disagreements: v.d as number }
}

export function peerEvidenceJson(e: PeerEvidence): string {
  return JSON.stringify({ a: e.agreements, d: e.disagreements })
}

/** "Something changed in mesh M; read it" (sent after every write, so others need not poll). */
export interface ClusterHint {
  readonly mesh: string
  readonly from: string
}

export function parseHint(v: unknown): ClusterHint {
  if (!isRecord(v)) throw bad('a cluster hint must be an object')
  return { mesh: parsed(() => parsePeerId(v.mesh, 'hint.mesh')), from: parseServerId(v.from, 'hint.from') }
}

/** A signal from `from` (a member of server `sender`) to `to`, a member of server `owner`. */
export interface ClusterSignal {
  readonly mesh: string
  readonly sender: string
  readonly owner: string
  readonly from: string
  readonly to: string
  readonly data: SignalData
}

export function parseClusterSignal(v: unknown): ClusterSignal {
  if (!isRecord(v)) throw bad('a cluster signal must be an object')
  const env = parsed(() => parseSignalEnvelope({ to: v.to, data: v.data }))
  return {
    mesh: parsed(() => parsePeerId(v.mesh, 'signal.mesh')),
    sender: parseServerId(v.sender, 'signal.sender'),
    owner: parseServerId(v.owner, 'signal.owner'),
    from: parsed(() => parsePeerId(v.from, 'signal.from')),
    to: env.to,
    data: env.data,
  }
}
