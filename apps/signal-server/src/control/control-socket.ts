import { randomBytes } from 'node:crypto'
import {
  ButterflyError,
  CONTROL_EVENTS,
  ControlError,
  type HelloMessage,
  type IceServer,
  type JoinAck,
  type PlanMessage,
  parseJoinRequest,
  parseSignalEnvelope,
  parseStageFailed,
  parseStageReady,
  peerIdFromPublicKey,
  verifyJoinProof,
  type WireError,
} from '@butterfly/core'
import type { Server, Socket } from 'socket.io'
import { JoinRefusedError } from '../errors.js'
import { JoinAdmission, normalizeAddress } from './join-admission.js'
import type { MemberSink, Mesh } from './mesh.js'
import type { MeshRegistry } from './mesh-registry.js'
import type { IceFor } from './turn-credentials.js'

/**
 * Sent to a socket when an event it emitted without an ack callback is refused. With an ack
 * callback the same error comes back as `{ ok: false, error }` instead.
 */
export const ERROR_EVENT = 'error-event'

export interface ErrorEvent {
  /** The refused event's name (cut to 64 characters). */
  readonly event: string
  readonly error: WireError
}

export interface ControlSocketOptions {
  readonly registry: MeshRegistry
  readonly iceServers: readonly IceServer[]
  /** Each peer's ICE servers and policy (minted TURN credentials); default: `iceServers`, 'all'. */
  readonly iceFor?: IceFor
  readonly heartbeatMs: number
  /** Per-peer tokens and per-address limits; default: the defaults over `registry`, no tokens. */
  readonly admission?: JoinAdmission
  /** Every refused join, by code (metrics). */
  readonly onJoinRefused?: (code: string) => void
  /** Unexpected (non-Butterfly) errors; the peer only sees ERR_CONTROL_INPUT. */
  readonly onError?: (err: unknown) => void
}

const KNOWN: ReadonlySet<string> = new Set([
  CONTROL_EVENTS.join,
  CONTROL_EVENTS.heartbeat,
  CONTROL_EVENTS.signal,
  CONTROL_EVENTS.stageReady,
  CONTROL_EVENTS.stageFailed,
  CONTROL_EVENTS.leave,
])

type Ack = (reply: unknown) => void
type Reply = { readonly ok: true } & Record<string, unknown>

/** Wires the control protocol (control-protocol.ts) onto every socket.io connection. */
export function attachControlSocket(io: Server, options: ControlSocketOptions): void {
  const admission = options.admission ?? new JoinAdmission(options.registry)
  io.on('connection', (socket) => handleConnection(socket, options, admission))
}

function handleConnection(socket: Socket, options: ControlSocketOptions, admission: JoinAdmission): void {
  const address = normalizeAddress(socket.handshake.address)
  // The join proof signs this, so a proof is good for this connection only.
  const nonce = randomBytes(32).toString('base64url')
  socket.emit(CONTROL_EVENTS.hello, { nonce } satisfies HelloMessage)
  let member: { mesh: Mesh; peerId: string; release: () => void } | undefined
  /** Forgets the membership, freeing its place in the per-address count. */
  const forget = () => {
    member?.release()
    member = undefined
  }
  // The join ack must reach the peer before its first plan, or it cannot find itself in it.
  let heldPlan: PlanMessage | undefined
  let acked = false
  const sink: MemberSink = {
    signal: (from, data) => socket.emit(CONTROL_EVENTS.signal, { from, data }),
    plan: (plan) => {
      if (acked) socket.emit(CONTROL_EVENTS.plan, plan)
      else heldPlan = plan
    },
    peerLeft: (peerId) => socket.emit(CONTROL_EVENTS.peerLeft, { peerId }),
    drop: () => {
      forget()
      socket.disconnect(true)
    },
  }

  const on = (event: string, handler: (payload: unknown, ack: Ack | undefined) => Reply | undefined) => {
    socket.on(event, (...args: unknown[]) => {
      const ack = typeof args.at(-1) === 'function' ? (args.pop() as Ack) : undefined
      let reply: Reply | undefined
      try {
        if (args.length > 1) throw new ControlError('ERR_CONTROL_INPUT', `${event} takes one argument`)
        reply = handler(args[0], ack)
      } catch (err) {
        refuse(event, err, ack)
        return
      }
      if (reply !== undefined) ack?.(reply)
    })
  }

  const refuse = (event: string, err: unknown, ack: Ack | undefined) => {
    if (!(err instanceof ButterflyError)) options.onError?.(err)
    const error: WireError =
      err instanceof ButterflyError
        ? err.toJSON()
        : { name: 'ControlError', code: 'ERR_CONTROL_INPUT', message: `${event} could not be handled` }
    const retry = err instanceof JoinRefusedError && err.retryAfterMs !== undefined
    if (ack !== undefined) ack({ ok: false, error, ...(retry ? { retryAfterMs: err.retryAfterMs } : {}) })
    else socket.emit(ERROR_EVENT, { event: event.slice(0, 64), error } satisfies ErrorEvent)
  }

  const joined = (event: string) => {
    if (member === undefined) throw new ControlError('ERR_NOT_JOINED', `join a mesh before sending ${event}`)
    member.mesh.touch(member.peerId)
    return member
  }

  on(CONTROL_EVENTS.join, (payload, ack) => {
    if (member !== undefined) {
      throw new ControlError(
        'ERR_CONTROL_INPUT',
        `already joined mesh "${member.mesh.name}" as ${member.peerId}`,
      )
    }
    const refused = (err: unknown) => {
      if (err instanceof ButterflyError) options.onJoinRefused?.(err.code)
      refuse(CONTROL_EVENTS.join, err, ack)
      // Sent after the refusal, so the peer reads why before the connection goes.
      socket.disconnect(true)
      return undefined
    }
    try {
      admission.attempt(address)
    } catch (err) {
      return refused(err)
    }
    const req = parseJoinRequest(payload)
    let release: () => void
    let mesh: Mesh
    try {
      const found = options.registry.get(req.mesh)
      if (found === undefined) throw new ControlError('ERR_MESH_UNKNOWN', `no mesh named "${req.mesh}"`)
      mesh = found
      if (!verifyJoinProof(req.publicKeyBytes, req.mesh, nonce, req.proof)) {
        throw new ControlError(
          'ERR_JOIN_PROOF',
          'join proof does not verify: sign (mesh, hello nonce of this connection) with the announced key',
        )
      }
      // The token is checked (and a per-peer one bound) only for a key the peer has proved it holds.
      admission.credential(mesh, req.token, peerIdFromPublicKey(req.publicKeyBytes))
      release = admission.occupy(address)
    } catch (err) {
      return refused(err)
    }
    acked = false
    let peerId: string
    try {
      peerId = mesh.join(req.capabilities, sink, req.publicKeyBytes)
    } catch (err) {
      release()
      throw err
    }
    member = { mesh, peerId, release }
    // Minted per join: a rejoin gets fresh TURN credentials.
    const ice = options.iceFor?.(peerId) ?? { iceServers: options.iceServers, iceTransportPolicy: 'all' }
    const reply: JoinAck = {
      ok: true,
      peerId,
      iceServers: ice.iceServers,
      iceTransportPolicy: ice.iceTransportPolicy,
      heartbeatMs: options.heartbeatMs,
    }
    ack?.(reply)
    acked = true
    if (heldPlan !== undefined) {
      socket.emit(CONTROL_EVENTS.plan, heldPlan)
      heldPlan = undefined
    }
    return undefined
  })

  on(CONTROL_EVENTS.heartbeat, () => {
    joined(CONTROL_EVENTS.heartbeat)
    return { ok: true }
  })

  on(CONTROL_EVENTS.signal, (payload) => {
    const { mesh, peerId } = joined(CONTROL_EVENTS.signal)
    const env = parseSignalEnvelope(payload)
    mesh.relaySignal(peerId, env.to, env.data)
    return { ok: true }
  })

  on(CONTROL_EVENTS.stageReady, (payload) => {
    const { mesh, peerId } = joined(CONTROL_EVENTS.stageReady)
    const { planVersion } = parseStageReady(payload)
    const current = mesh.stageReady(peerId, planVersion)
    return { ok: true, stale: !current }
  })

  on(CONTROL_EVENTS.stageFailed, (payload) => {
    const { mesh, peerId } = joined(CONTROL_EVENTS.stageFailed)
    const { planVersion } = parseStageFailed(payload)
    const current = mesh.stageFailed(peerId, planVersion)
    return { ok: true, stale: !current }
  })

  on(CONTROL_EVENTS.leave, () => {
    const { mesh, peerId } = joined(CONTROL_EVENTS.leave)
    forget()
    mesh.leave(peerId, sink, 'leave')
    return { ok: true }
  })

  socket.onAny((event: unknown, ...args: unknown[]) => {
    if (typeof event === 'string' && KNOWN.has(event)) return
    const ack = typeof args.at(-1) === 'function' ? (args.at(-1) as Ack) : undefined
    const name = typeof event === 'string' ? event : String(event)
    refuse(name, new ControlError('ERR_CONTROL_INPUT', `unknown event "${name.slice(0, 64)}"`), ack)
  })

  socket.on('disconnect', () => {
    if (member === undefined) return
    const { mesh, peerId } = member
    forget()
    // Only this connection's session: a later one through another server may have replaced it.
    mesh.leave(peerId, sink, 'disconnect')
  })
}
