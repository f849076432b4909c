import {
  CONTROL_EVENTS,
  ControlError,
  errorFromWire,
  type JoinAck,
  type JoinRequest,
  type PlanMessage,
  parsePlanMessage,
  type Signaling,
} from '@butterfly/core'
import { io, type Socket } from 'socket.io-client'

export interface ControlClientInit {
  readonly serverUrl: string
  readonly connectTimeoutMs?: number
}

/**
 * The worker's side of the control plane: one socket.io connection to the server for
 * join, heartbeats, plans and signaling relay.
 */
export class ControlClient implements Signaling {
  private readonly socket: Socket
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
      const fail = (err: Error) => {
        clearTimeout(timer)
        socket.close()
        reject(new ControlError('ERR_NOT_JOINED', `cannot reach ${init.serverUrl}: ${err.message}`))
      }
      signal?.addEventListener('abort', () => fail(new Error('aborted')), { once: true })
      socket.once('connect', () => {
        clearTimeout(timer)
        resolve()
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

  /** Joins a mesh; rejects with the server's error (e.g. ERR_MESH_TOKEN) rebuilt. */
  async join(request: JoinRequest): Promise<Extract<JoinAck, { ok: true }>> {
    const ack = (await this.socket.timeout(10_000).emitWithAck(CONTROL_EVENTS.join, request)) as JoinAck
    if (!ack || typeof ack !== 'object') throw new ControlError('ERR_CONTROL_INPUT', 'malformed join answer')
    if (!ack.ok) throw errorFromWire(ack.error)
    this.peer = ack.peerId
    this.heartbeat = setInterval(() => this.socket.emit(CONTROL_EVENTS.heartbeat, {}), ack.heartbeatMs)
    this.heartbeat.unref()
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
