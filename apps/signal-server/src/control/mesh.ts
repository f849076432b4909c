import { EventEmitter } from 'node:events'
import {
  ControlError,
  type ModelConfig,
  type PeerCapabilities,
  type PlanMessage,
  parsePeerId,
  parseSignalEnvelope,
  peerIdFromPublicKey,
  type SignalData,
  stagePeers,
  type WireError,
} from '@butterfly/core'
import type {
  LocalPeerHandle,
  LocalPeerHandlers,
  Member,
  MemberSink,
  MeshEvents,
  MeshInit,
  PeerLeftReason,
  WorkerInfo,
} from './mesh-member.js'
import {
  closedError,
  nextReadyPlan,
  noWorkersError,
  type Planner,
  PlanReadiness,
  planMessage,
  planStages,
  samePlan,
} from './mesh-plan.js'
import type { ModelIndex } from './model-index.js'
import { secretEquals } from './secret-equals.js'
import { SignalContacts } from './signal-contacts.js'

export type {
  LocalPeerHandle,
  LocalPeerHandlers,
  MemberSink,
  MeshEvents,
  MeshInit,
  PeerLeftReason,
  Planner,
  WorkerInfo,
}

/**
 * One mesh: its model, its members and the plan over them. Every membership change among
 * workers re-plans; a plan that changed gets the next `version` and goes to every member (one
 * that did not goes only to a peer joining). Signals only travel between members of this mesh.
 */
export class Mesh extends EventEmitter<MeshEvents> {
  readonly name: string
  readonly model: ModelIndex
  /** Where the model files are served, as put in every plan. */
  readonly modelPath: string
  private readonly init: MeshInit
  private readonly now: () => number
  private readonly members = new Map<string, Member>()
  private current: PlanMessage
  private currentError: WireError | undefined
  /** Excluded peers and why ('outvoted', 'calibration', 'load-failed', 'slow-claim'). */
  private readonly excluded = new Map<string, string>()
  private readonly readiness = new PlanReadiness()
  private readonly contacts = new SignalContacts()
  private closed = false

  constructor(init: MeshInit) {
    super()
    // Every generation waiting for a re-plan listens for 'ready' (up to --max-concurrent of them),
    // so Node's leak warning at 11 listeners would fire on an honest burst.
    this.setMaxListeners(0)
    this.init = init
    this.name = parsePeerId(init.name, 'mesh name') // mesh names follow the peer-id rule
    this.model = init.model
    this.modelPath = `/models/${this.name}/`
    this.now = init.now ?? Date.now
    this.current = planMessage(0, this, [], [])
    this.currentError = noWorkersError()
  }

  get modelId(): string {
    return this.model.manifest.modelId
  }

  get config(): ModelConfig {
    return this.model.config
  }

  get plan(): PlanMessage {
    return this.current
  }

  /** Why the current plan has no stages; undefined once a plan exists. */
  get planError(): WireError | undefined {
    return this.currentError
  }

  get requiresToken(): boolean {
    return this.init.meshToken !== undefined
  }

  checkToken(token: string): boolean {
    return this.init.meshToken === undefined || secretEquals(token, this.init.meshToken)
  }

  has(peerId: string): boolean {
    return this.members.has(peerId)
  }

  /** A worker's public key, to check the signatures on its step results; undefined for others. */
  publicKey(peerId: string): Uint8Array | undefined {
    const key = this.members.get(peerId)?.publicKey
    return key === undefined ? undefined : Uint8Array.from(key)
  }

  /**
   * Gives a peer no more layers (outvoted too often, or caught failing a claim); it stays a
   * member and is listed in the plan's `excluded`, with `reason` kept. Re-plans when this
   * changes anything.
   */
  exclude(peerId: string, reason = 'outvoted'): boolean {
    if (this.excluded.has(peerId) || !this.members.has(peerId)) return false
    this.excluded.set(peerId, reason)
    this.init.onExcludedPeer?.(peerId, reason)
    this.replan()
    return true
  }

  excludedPeers(): string[] {
    return [...this.excluded.keys()].filter((id) => this.members.has(id))
  }

  /** Why a peer is excluded; undefined when it is not. */
  exclusionReason(peerId: string): string | undefined {
    return this.excluded.get(peerId)
  }

  workers(): WorkerInfo[] {
    const out: WorkerInfo[] = []
    for (const m of this.members.values()) if (m.capabilities) out.push({ id: m.id, ...m.capabilities })
    return out
  }

  /**
   * Adds a worker whose key the caller has verified, under the id derived from that key
   * (peerIdFromPublicKey), re-plans, and returns the id. A key already in the mesh is refused.
   */
  join(capabilities: PeerCapabilities, sink: MemberSink, publicKey: Uint8Array): string {
    this.assertOpen()
    const id = peerIdFromPublicKey(publicKey)
    if (this.members.has(id)) {
      throw new ControlError(
        'ERR_CONTROL_INPUT',
        `identity already connected: ${id} is in mesh "${this.name}"`,
      )
    }
    this.members.set(id, {
      id,
      sink,
      capabilities,
      publicKey: Uint8Array.from(publicKey),
      lastSeen: this.now(),
    })
    this.guard(() => this.emit('peer-joined', id))
    // A plan the join did not change went to the others before; the newcomer still needs it.
    if (!this.replan()) this.guard(() => sink.plan(this.current))
    return id
  }

  /** An in-process member (the gateway): signals without a socket, hosts no layers, never times out. */
  addLocalPeer(peerId: string, handlers: LocalPeerHandlers): LocalPeerHandle {
    this.assertOpen()
    const id = parsePeerId(peerId)
    if (this.members.has(id)) throw new ControlError('ERR_CONTROL_INPUT', `peer id "${id}" is taken`)
    const sink: MemberSink = {
      signal: (from, data) => handlers.onSignal(from, data),
      plan: (plan) => handlers.onPlan(plan),
      peerLeft: (left) => handlers.onPeerLeft?.(left),
    }
    this.members.set(id, {
      id,
      sink,
      capabilities: undefined,
      publicKey: undefined,
      lastSeen: Number.POSITIVE_INFINITY,
    })
    this.guard(() => this.emit('peer-joined', id))
    this.guard(() => sink.plan(this.current))
    return {
      peerId: id,
      sendSignal: (to, data) => {
        if (this.members.get(id)?.sink !== sink) throw new ControlError('ERR_NOT_JOINED', `${id} has left`)
        const env = parseSignalEnvelope({ to, data })
        this.relaySignal(id, env.to, env.data)
      },
      leave: () => {
        if (this.members.get(id)?.sink === sink) this.remove([id], 'leave')
      },
    }
  }

  /** Delivers a signal to a member of this mesh; anyone else is ERR_PEER_UNKNOWN. */
  relaySignal(from: string, to: string, data: SignalData): void {
    const target = this.members.get(to)
    if (target === undefined || !this.members.has(from)) {
      throw new ControlError('ERR_PEER_UNKNOWN', `no peer "${to}" in mesh "${this.name}"`)
    }
    this.contacts.add(from, to)
    this.guard(() => target.sink.signal(from, data))
  }

  /** Records that a member is alive. */
  touch(peerId: string): void {
    const m = this.members.get(peerId)
    if (m !== undefined && m.capabilities !== undefined) m.lastSeen = this.now()
  }

  /**
   * Marks a peer's stage of `planVersion` loaded; returns false for a stale version (the plan
   * moved on while it loaded). Emits 'ready' once every stage of the current plan is ready.
   */
  stageReady(peerId: string, planVersion: number): boolean {
    if (!this.holdsStage(peerId, planVersion)) return false
    const plan = this.current
    if (this.readiness.mark(plan, peerId)) this.guard(() => this.emit('ready', plan))
    return true
  }

  /**
   * A peer reports it could not load its stage of `planVersion`: it loses its place (excluded
   * as 'load-failed'). Returns false for a stale version.
   */
  stageFailed(peerId: string, planVersion: number): boolean {
    if (!this.holdsStage(peerId, planVersion)) return false
    this.exclude(peerId, 'load-failed')
    return true
  }

  /** False for a stale version; throws for a version not issued or a peer without a stage in it. */
  private holdsStage(peerId: string, planVersion: number): boolean {
    if (planVersion < this.current.version) return false
    if (planVersion > this.current.version) {
      throw new ControlError('ERR_CONTROL_INPUT', `plan version ${planVersion} has not been issued`)
    }
    if (!this.current.stages.some((s) => stagePeers(s).includes(peerId))) {
      throw new ControlError('ERR_CONTROL_INPUT', `${peerId} holds no stage in plan ${planVersion}`)
    }
    return true
  }

  /** Every stage of the current plan is loaded (false while the plan has no stages). */
  isReady(): boolean {
    return this.readiness.isReady(this.current)
  }

  /** Resolves with the first plan whose every stage is ready (now, or when it becomes so). */
  waitForReadyPlan(signal?: AbortSignal): Promise<PlanMessage> {
    if (this.isReady()) return Promise.resolve(this.current)
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (this.closed) return Promise.reject(closedError(this.name))
    return nextReadyPlan(this, this.name, signal)
  }

  /** Drops workers silent for longer than the heartbeat timeout; returns their ids. */
  sweep(): string[] {
    const deadline = this.now() - this.init.heartbeatTimeoutMs
    const stale = [...this.members.values()].filter((m) => m.lastSeen < deadline).map((m) => m.id)
    if (stale.length > 0) this.remove(stale, 'timeout')
    return stale
  }

  /** Removes members, tells the members it concerns, and re-plans if a worker went. */
  remove(ids: readonly string[], reason: PeerLeftReason): void {
    const gone: Member[] = []
    for (const id of ids) {
      const m = this.members.get(id)
      if (m === undefined) continue
      this.members.delete(id)
      gone.push(m)
    }
    const holders = new Set(this.current.stages.flatMap(stagePeers))
    for (const m of gone) {
      if (reason !== 'leave' && reason !== 'disconnect') this.guard(() => m.sink.drop?.(reason))
      // Told: local peers (the gateway), stage holders (a pipeline's ends) and its contacts.
      const contacts = this.contacts.drop(m.id)
      for (const o of this.members.values()) {
        if (o.capabilities === undefined || holders.has(o.id) || contacts.has(o.id)) {
          this.guard(() => o.sink.peerLeft(m.id))
        }
      }
      this.guard(() => this.emit('peer-left', m.id, reason))
    }
    if (gone.some((m) => m.capabilities !== undefined) && !this.closed) this.replan()
    else if (gone.length > 0) this.init.onMembership?.(this.workers().length)
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.remove([...this.members.keys()], 'close')
    this.init.onMembership?.(0)
    this.guard(() => this.emit('close'))
  }

  /** Re-plans; pushes the plan to every member only when it changed. Returns whether it did. */
  private replan(): boolean {
    // Timed apart: computing is paid once, the broadcast once per member (the load bench reads both).
    const started = performance.now()
    const all = this.workers()
    const workers = all.filter((w) => !this.excluded.has(w.id))
    const { stages, error } = planStages(this.init.planner, this.config, workers)
    const next = planMessage(this.current.version + 1, this, stages, this.excludedPeers())
    const planned = performance.now()
    this.init.onMembership?.(all.length)
    this.init.onExcluded?.(this.excludedPeers().length)
    // Most joins and leaves among many peers move no stage: re-sending that plan cost O(members)
    // emits per churn event, and its new version would have voided every stage being loaded.
    if (samePlan(next, error, this.current, this.currentError)) {
      this.init.onReplan?.({ planSeconds: (planned - started) / 1e3, broadcastSeconds: 0, members: 0 })
      return false
    }
    this.current = next
    this.currentError = error
    this.readiness.reset()
    for (const m of this.members.values()) this.guard(() => m.sink.plan(next))
    const [planSeconds, broadcastSeconds] = [(planned - started) / 1e3, (performance.now() - planned) / 1e3]
    this.init.onReplan?.({ planSeconds, broadcastSeconds, members: this.members.size })
    this.guard(() => this.emit('plan', next))
    return true
  }

  private assertOpen(): void {
    if (this.closed) throw closedError(this.name)
  }

  private guard(fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.init.onError?.(err)
    }
  }
}
