import { ControlError, type WireError } from '../errors.js'
import { fromBase64url } from '../identity/base64url.js'
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from '../identity/peer-identity.js'
import type { SignalData } from '../transport/transport.js'
import type { IceServer, IceTransportPolicy } from '../transport/webrtc-transport.js'

/**
 * The control plane between peers and the signal server, carried over socket.io. Every
 * event from a peer is parsed by the functions here before anything else looks at it.
 *
 * Events (client → server): `join` (with ack), `heartbeat`, `signal`, `stage-ready`,
 * `stage-failed` (the peer could not load its stage; servers before it answer an error-event,
 * which workers ignore), `leave`.
 * Events (server → client): `hello` (on connect), `plan`, `signal`, `peer-left`.
 *
 * Joining proves key possession: the server greets every connection with `hello {nonce}`, a
 * fresh random value, and the join carries the peer's Ed25519 public key and a signature over
 * (mesh, nonce) (identity/join-proof.ts). The server names the peer after its key
 * (peerIdFromPublicKey), so an id survives restarts and cannot be taken by anyone else.
 */
export const CONTROL_EVENTS = {
  hello: 'hello',
  join: 'join',
  heartbeat: 'heartbeat',
  signal: 'signal',
  stageReady: 'stage-ready',
  stageFailed: 'stage-failed',
  leave: 'leave',
  plan: 'plan',
  peerLeft: 'peer-left',
} as const

export type Backend = 'cpu' | 'cuda' | 'wasm' | 'webgpu'
const BACKENDS: readonly Backend[] = ['cpu', 'cuda', 'wasm', 'webgpu']

/**
 * How a peer computes: 'fp32' (fp32 weights and math), 'fp16w' (fp16-rounded weights, fp32 math),
 * 'fp16' (fp16 math, e.g. WebGPU shader-f16), 'int8a' (an int4 model's products over activations
 * quantised to int8, Int4Compute 'int8'). With the backend it names the peer's numeric class.
 */
export type Precision = 'fp32' | 'fp16w' | 'fp16' | 'int8a'
export const PRECISIONS: readonly Precision[] = ['fp32', 'fp16w', 'fp16', 'int8a']

/** "backend/precision", the numeric class result voting groups replicas by. */
export function numericClassOf(caps: Pick<PeerCapabilities, 'backend' | 'precision'>): string {
  return `${caps.backend}/${caps.precision ?? 'fp32'}`
}

export interface PeerCapabilities {
  readonly backend: Backend
  /** Default 'fp32'. */
  readonly precision?: Precision
  readonly memoryBytes: number
  /** Single-token layer evaluations per second on this model, from the join benchmark. */
  readonly layerStepsPerSec: number
  readonly name: string
}

export interface JoinRequest {
  readonly mesh: string
  readonly token: string
  readonly capabilities: PeerCapabilities
  /** Ed25519 public key, unpadded base64url of 32 bytes. */
  readonly publicKey: string
  /** signJoinProof(identity, mesh, nonce): base64url of a 64-byte signature. */
  readonly proof: string
}

/** Sent by the server to every new connection; the join proof signs this nonce. */
export interface HelloMessage {
  readonly nonce: string
}

export type JoinAck =
  | {
      readonly ok: true
      readonly peerId: string
      readonly iceServers: readonly IceServer[]
      /** 'relay': TURN only (absent from older servers: 'all'). */
      readonly iceTransportPolicy?: IceTransportPolicy
      readonly heartbeatMs: number
    }
  | { readonly ok: false; readonly error: WireError }

export interface PlanStage {
  readonly start: number
  readonly end: number
  /** The stage's primary peer. */
  readonly peerId: string
  /** Further peers holding the same layers, for result voting (absent: the primary alone). */
  readonly replicas?: readonly string[]
}

export const MAX_STAGE_REPLICAS = 16

/** Every peer that holds a stage's layers, primary first. */
export function stagePeers(stage: PlanStage): string[] {
  return [stage.peerId, ...(stage.replicas ?? [])]
}

/** Pushed to every member whenever the plan changes; `version` only grows. */
export interface PlanMessage {
  readonly version: number
  readonly mesh: string
  /** Model files are served at `${modelPath}config.json`, `tokenizer.json`, `model.safetensors`, `manifest.json`. */
  readonly modelPath: string
  readonly modelId: string
  readonly stages: readonly PlanStage[]
  /** Peers outvoted too often: still members, but given no layers. */
  readonly excluded?: readonly string[]
}

export interface SignalEnvelope {
  readonly to: string
  readonly data: SignalData
}

export const LIMITS = {
  meshName: 64,
  token: 256,
  peerName: 64,
  peerId: 64,
  signalBytes: 64 * 1024,
  maxMemoryBytes: 2 ** 50,
  maxLayerStepsPerSec: 1e9,
  nonceMin: 16,
  nonceMax: 128,
  errorMessage: 1024,
} as const

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/

function bad(message: string): ControlError {
  return new ControlError('ERR_CONTROL_INPUT', message)
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function name(v: unknown, field: string, max: number): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > max || !NAME_RE.test(v)) {
    throw bad(`${field} must be 1-${max} characters of letters, digits, '.', '_' or '-'`)
  }
  return v
}

function finite(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw bad(`${field} must be a number from ${min} to ${max}`)
  }
  return v
}

export function parsePeerId(v: unknown, field = 'peer id'): string {
  return name(v, field, LIMITS.peerId)
}

/** Base64url text that decodes to exactly `bytes` bytes; returns the decoded bytes. */
function base64urlOf(v: unknown, field: string, bytes: number): Uint8Array {
  const decoded = typeof v === 'string' && v.length <= 4 * bytes ? fromBase64url(v) : undefined
  if (decoded === undefined || decoded.length !== bytes) {
    throw bad(`${field} must be unpadded base64url of ${bytes} bytes`)
  }
  return decoded
}

/** The join request, checked field by field; `publicKeyBytes` is the decoded key. */
export function parseJoinRequest(v: unknown): JoinRequest & { readonly publicKeyBytes: Uint8Array } {
  if (!isRecord(v)) throw bad('join must be an object')
  const capabilities = parseCapabilities(v.capabilities, 'join.capabilities')
  if (typeof v.token !== 'string' || v.token.length > LIMITS.token) throw bad('join.token must be a string')
  const publicKeyBytes = base64urlOf(v.publicKey, 'join.publicKey', PUBLIC_KEY_BYTES)
  base64urlOf(v.proof, 'join.proof', SIGNATURE_BYTES)
  return {
    mesh: name(v.mesh, 'join.mesh', LIMITS.meshName),
    token: v.token,
    publicKey: v.publicKey as string,
    proof: v.proof as string,
    publicKeyBytes,
    capabilities,
  }
}

/** A peer's announced capabilities, checked field by field (`field` names them in errors). */
export function parseCapabilities(caps: unknown, field: string): PeerCapabilities {
  if (!isRecord(caps)) throw bad(`${field} must be an object`)
  if (!BACKENDS.includes(caps.backend as Backend))
    throw bad(`${field}.backend must be one of ${BACKENDS.join(', ')}`)
  if (caps.precision !== undefined && !PRECISIONS.includes(caps.precision as Precision))
    throw bad(`${field}.precision must be one of ${PRECISIONS.join(', ')}`)
  return {
    backend: caps.backend as Backend,
    precision: (caps.precision ?? 'fp32') as Precision,
    memoryBytes: finite(caps.memoryBytes, `${field}.memoryBytes`, 1, LIMITS.maxMemoryBytes),
    layerStepsPerSec: finite(
      caps.layerStepsPerSec,
      `${field}.layerStepsPerSec`,
      0,
      LIMITS.maxLayerStepsPerSec,
    ),
    name: caps.name === undefined ? 'peer' : name(caps.name, `${field}.name`, LIMITS.peerName),
  }
}

/** Validates the server's `hello` (a worker trusts the server, but not blindly). */
export function parseHello(v: unknown): HelloMessage {
  if (!isRecord(v)) throw bad('hello must be an object')
  const { nonce } = v
  if (
    typeof nonce !== 'string' ||
    nonce.length < LIMITS.nonceMin ||
    nonce.length > LIMITS.nonceMax ||
    !/^[A-Za-z0-9_-]+$/.test(nonce)
  ) {
    throw bad(`hello.nonce must be ${LIMITS.nonceMin}-${LIMITS.nonceMax} base64url characters`)
  }
  return { nonce }
}

export function parseSignalEnvelope(v: unknown): SignalEnvelope {
  if (!isRecord(v)) throw bad('signal must be an object')
  const to = parsePeerId(v.to, 'signal.to')
  if (!isRecord(v.data)) throw bad('signal.data must be an object')
  let size: number
  try {
    size = JSON.stringify(v.data).length
  } catch {
    throw bad('signal.data must be plain JSON')
  }
  if (size > LIMITS.signalBytes) throw bad(`signal.data exceeds ${LIMITS.signalBytes} bytes`)
  return { to, data: v.data }
}

export function parseStageReady(v: unknown): { planVersion: number } {
  if (!isRecord(v)) throw bad('stage-ready must be an object')
  return { planVersion: finite(v.planVersion, 'stage-ready.planVersion', 0, Number.MAX_SAFE_INTEGER) }
}

/** A peer's report that it could not load its stage of `planVersion`, and why. */
export interface StageFailed {
  readonly planVersion: number
  readonly error: { readonly code: string; readonly message: string }
}

/** Cuts an error to what `stage-failed` carries (a worker builds its report with this). */
export function stageFailedOf(planVersion: number, err: unknown): StageFailed {
  const raw = (err as { code?: unknown })?.code
  const code = typeof raw === 'string' && /^[A-Z0-9_]{1,64}$/.test(raw) ? raw : 'ERR_STAGE_LOAD'
  const message = String((err as { message?: unknown })?.message ?? err).slice(0, LIMITS.errorMessage)
  return { planVersion, error: { code, message } }
}

export function parseStageFailed(v: unknown): StageFailed {
  if (!isRecord(v)) throw bad('stage-failed must be an object')
  const planVersion = finite(v.planVersion, 'stage-failed.planVersion', 0, Number.MAX_SAFE_INTEGER)
  const e = v.error
  if (!isRecord(e) || typeof e.code !== 'string' || !/^[A-Z0-9_]{1,64}$/.test(e.code)) {
    throw bad('stage-failed.error.code must be 1-64 characters of A-Z, 0-9 and _')
  }
  if (typeof e.message !== 'string' || e.message.length > LIMITS.errorMessage) {
    throw bad(`stage-failed.error.message must be a string of at most ${LIMITS.errorMessage} characters`)
  }
  return { planVersion, error: { code: e.code, message: e.message } }
}

/** Validates a plan received from the server (a worker trusts the server, but not blindly). */
export function parsePlanMessage(v: unknown): PlanMessage {
  if (!isRecord(v)) throw bad('plan must be an object')
  if (!Array.isArray(v.stages) || v.stages.length > 4096) throw bad('plan.stages must be an array')
  const stages = v.stages.map((s, i) => {
    if (!isRecord(s)) throw bad(`plan.stages[${i}] must be an object`)
    const start = finite(s.start, `plan.stages[${i}].start`, 0, 1 << 20)
    const end = finite(s.end, `plan.stages[${i}].end`, start + 1, 1 << 20)
    const peerId = parsePeerId(s.peerId, `plan.stages[${i}].peerId`)
    if (s.replicas === undefined) return { start, end, peerId }
    if (!Array.isArray(s.replicas) || s.replicas.length > MAX_STAGE_REPLICAS) {
      throw bad(`plan.stages[${i}].replicas must be an array of at most ${MAX_STAGE_REPLICAS} peer ids`)
    }
    const replicas = s.replicas.map((r, j) => parsePeerId(r, `plan.stages[${i}].replicas[${j}]`))
    if (new Set([peerId, ...replicas]).size !== replicas.length + 1) {
      throw bad(`plan.stages[${i}] names a peer twice`)
    }
    return { start, end, peerId, replicas }
  })
  let excluded: string[] | undefined
  if (v.excluded !== undefined) {
    if (!Array.isArray(v.excluded) || v.excluded.length > 4096)
      throw bad('plan.excluded must be an array of peer ids')
    excluded = v.excluded.map((id, i) => parsePeerId(id, `plan.excluded[${i}]`))
  }
  if (typeof v.modelPath !== 'string' || !v.modelPath.startsWith('/'))
    throw bad('plan.modelPath must be a path')
  if (typeof v.modelId !== 'string') throw bad('plan.modelId must be a string')
  return {
    version: finite(v.version, 'plan.version', 0, Number.MAX_SAFE_INTEGER),
    mesh: name(v.mesh, 'plan.mesh', LIMITS.meshName),
    modelPath: v.modelPath,
    modelId: v.modelId,
    stages,
    ...(excluded === undefined ? {} : { excluded }),
  }
}
