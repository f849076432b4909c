import { io, type Socket } from 'socket.io-client'
import { ControlError, errorFromWire } from '../errors.js'
import { toBase64url } from '../identity/base64url.js'
import { signJoinProof } from '../identity/join-proof.js'
import type { PeerIdentity } from '../identity/peer-identity.js'
import type { Signaling } from '../transport/transport.js'
import {
  CONTROL_EVENTS,
  type JoinAck,
  type JoinRequest,
  type PlanMessage,
  parseHello,
  parsePlanMessage,
  stageFailedOf,
} from './control-protocol.js'

export interface ControlClientInit {
  readonly serverUrl: string
  readonly connectTimeoutMs?: number
}

/** A join request with the identity to join as, from which ControlClient.join makes the key fields. */
export type JoinOptions = Omit<JoinRequest, 'publicKey' | 'proof'> & { readonly identity: PeerIdentity }

/**
 * The worker's side of the control plane: one socket.io connection to the server for
 * join, heartbeats, plans and signaling relay.
 */
export class ControlClient implements Signaling {
  private readonly socket: Socket
  /** From the server's hello; the join proof signs it. */
  private nonce: string | undefined
  private heartbeat: ReturnType<typeof setInterval> | undefined
  private peer: string | undefined
  /** Plans can arrive right after the join ack, before anyone subscribes: keep the latest. */
  private latestPlan: unknown
  private readonly planHandlers = new Set<(raw: unknown) => void>()

  private constructor(socket: Socket) {
    this.socket = socket
    socket.on(CONTROL_EVENTS.plan, (raw: unknown) => {
      this.latestPlan = raw
      for (const h of this.planHandlers) h(raw)
    })
  }

  static async connect(init: ControlClientInit, signal?: AbortSignal): Promise<ControlClient> {
    const socket = io(init.serverUrl, { transports: ['websocket'], reconnection: false, autoConnect: false })
    const client = new ControlClient(socket)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error('timed out')), init.connectTimeoutMs ?? 10_000)
      let connected = false
      const fail = (err: Error) => {
        clearTimeout(timer)
        socket.close()
        const why = connected
          ? `${err.message} (no valid hello; is the server older than this worker?)`
          : err.message
        reject(new ControlError('ERR_NOT_JOINED', `cannot reach ${init.serverUrl}: ${why}`))
      }
      signal?.addEventListener('abort', () => fail(new Error('aborted')), { once: true })
      // The server greets right after connecting; the join cannot be signed before that.
      socket.once(CONTROL_EVENTS.hello, (raw: unknown) => {
        try {
          client.nonce = parseHello(raw).nonce
        } catch (err) {
          fail(err as Error)
          return
        }
        clearTimeout(timer)
        resolve()
      })
      socket.once('connect', () => {
        connected = true
      })
      socket.once('connect_error', fail)
      socket.connect()
    })
    return client
  }

  get peerId(): string {
    if (this.peer === undefined) throw new ControlError('ERR_NOT_JOINED', 'not joined yet')
    return this.peer
  }

  /**
   * Joins a mesh as `identity`, proving it holds the key; rejects with the server's error
   * (e.g. ERR_MESH_TOKEN, ERR_JOIN_PROOF) rebuilt. The peer id is the one the key determines.
   */
  async join(options: JoinOptions): Promise<Extract<JoinAck, { ok: true }>> {
    if (this.nonce === undefined) throw new ControlError('ERR_NOT_JOINED', 'no hello from the server yet')
    const { identity, mesh, token, capabilities } = options
    // Built field by field: the secret key must never ride along to the server.
    const request: JoinRequest = {
      mesh,
      token,
      capabilities,
      publicKey: toBase64url(identity.publicKey),
      proof: signJoinProof(identity, mesh, this.nonce),
    }
    const ack = (await this.socket.timeout(10_000).emitWithAck(CONTROL_EVENTS.join, request)) as JoinAck
    if (!ack || typeof ack !== 'object') throw new ControlError('ERR_CONTROL_INPUT', 'malformed join answer')
    if (!ack.ok) throw errorFromWire(ack.error)
    if (ack.peerId !== identity.peerId) {
      throw new ControlError(
        'ERR_CONTROL_INPUT',
        `server assigned peer id ${String(ack.peerId)}, but this identity is ${identity.peerId}`,
      )
    }
    this.peer = ack.peerId
    this.heartbeat = setInterval(() => this.socket.emit(CONTROL_EVENTS.heartbeat, {}), ack.heartbeatMs)
    // Node's timers would keep the process alive for the heartbeat alone; browsers have no unref.
    ;(this.heartbeat as { unref?: () => void }).unref?.()
    return ack
  }

  onPlan(handler: (plan: PlanMessage) => void, onInvalid?: (err: unknown) => void): () => void {
    const listener = (raw: unknown) => {
      try {
        handler(parsePlanMessage(raw))
      } catch (err) {
        onInvalid?.(err)
      }
    }
    this.planHandlers.add(listener)
    if (this.latestPlan !== undefined) listener(this.latestPlan)
    return () => this.planHandlers.delete(listener)
  }

  onDisconnect(handler: (reason: string) => void): void {
    this.socket.on('disconnect', handler)
  }

  stageReady(planVersion: number): void {
    this.socket.emit(CONTROL_EVENTS.stageReady, { planVersion })
  }

  /** Tells the server this peer could not load its stage of `planVersion` (it will get no layers). */
  stageFailed(planVersion: number, err: unknown): void {
    this.socket.emit(CONTROL_EVENTS.stageFailed, stageFailedOf(planVersion, err))
  }

  send(to: string, data: Readonly<Record<string, unknown>>): void {
    this.socket.emit(CONTROL_EVENTS.signal, { to, data })
  }

  onSignal(handler: (from: string, data: Readonly<Record<string, unknown>>) => void): () => void {
    const listener = (raw: unknown) => {
      const m = raw as { from?: unknown; data?: unknown }
      if (typeof m?.from === 'string' && typeof m.data === 'object' && m.data !== null) {
        handler(m.from, m.data as Record<string, unknown>)
      }
    }
    this.socket.on(CONTROL_EVENTS.signal, listener)
    return () => this.socket.off(CONTROL_EVENTS.signal, listener)
  }

  /** Closes the connection without a word to the server (it is gone already). */
  close(): void {
    clearInterval(this.heartbeat)
    this.socket.close()
  }

  /** Tells the server we are leaving, then closes the connection. */
  async leave(): Promise<void> {
    clearInterval(this.heartbeat)
    if (this.socket.connected) {
      await this.socket
        .timeout(2000)
        .emitWithAck(CONTROL_EVENTS.leave, {})
        .catch(() => undefined)
    }
    this.socket.close()
  }
}
