import { EventEmitter } from 'node:events'
import { type ModelConfig, type PlanMessage, parsePeerId, stagePeers, type WireError } from '@butterfly/core'
import {
  LOCAL_ONLY,
  type Member,
  type MeshEvents,
  type MeshInit,
  type MeshReplication,
  type PeerLeftReason,
  type WorkerInfo,
} from './mesh-member.js'
import { closedError, noWorkersError, PlanReadiness, planMessage, planStages, samePlan } from './mesh-plan.js'
import type { ModelIndex } from './model-index.js'
import { SignalContacts } from './signal-contacts.js'

/**
 * What a mesh knows and how it plans: its members, the current plan, which stages are loaded and
 * who is excluded. Mesh (mesh.ts) adds how members come and go, here or through a cluster.
 */
export abstract class MeshCore extends EventEmitter<MeshEvents> {
  readonly name: string
  readonly model: ModelIndex
  /** Where the model files are served, as put in every plan. */
  readonly modelPath: string
  protected readonly init: MeshInit
  protected readonly now: () => number
  protected readonly members = new Map<string, Member>()
  protected current: PlanMessage
  protected currentError: WireError | undefined
  /** Excluded peers and why ('outvoted', 'calibration', 'load-failed', 'slow-claim'). */
  protected readonly excluded = new Map<string, string>()
  protected readonly readiness = new PlanReadiness()
  protected readonly contacts = new SignalContacts()
  protected replication: MeshReplication = LOCAL_ONLY
  /** Stage-ready marks for plans not adopted yet (a cluster's marks may outrun its plan). */
  protected readonly earlyReady = new Map<number, Set<string>>()
  protected closed = false

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

  has(peerId: string): boolean {
    return this.members.has(peerId)
  }

  /** A worker's public key, to check the signatures on its step results; undefined for others. */
  publicKey(peerId: string): Uint8Array | undefined {
    const key = this.members.get(peerId)?.publicKey
    return key === undefined ? undefined : Uint8Array.from(key)
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

  protected markReady(peerId: string): void {
    const plan = this.current
    if (this.readiness.mark(plan, peerId)) this.guard(() => this.emit('ready', plan))
  }

  /** Every stage of the current plan is loaded (false while the plan has no stages). */
  isReady(): boolean {
    return this.readiness.isReady(this.current)
  }

  /** Drops workers silent for longer than the heartbeat timeout; returns their ids. */
  sweep(): string[] {
    const deadline = this.now() - this.init.heartbeatTimeoutMs
    const stale = [...this.members.values()]
      .filter((m) => m.owner === undefined && m.lastSeen < deadline)
      .map((m) => m.id)
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
      if (m.owner === undefined) this.replication.memberDown(id)
      gone.push(m)
    }
    const holders = new Set(this.current.stages.flatMap(stagePeers))
    for (const m of gone) {
      if (reason !== 'leave' && reason !== 'disconnect') this.guard(() => m.sink.drop?.(reason))
      // Told: local peers (the gateway), stage holders (a pipeline's ends) and its contacts.
      const contacts = this.contacts.drop(m.id)
      for (const o of this.members.values()) {
        if (o.owner !== undefined) continue // its own server tells it
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
  protected replan(): boolean {
    // Timed apart: computing is paid once, the broadcast once per member (the load bench reads both).
    const started = performance.now()
    const all = this.workers()
    if (!this.replication.planning) {
      // The cluster's planner re-plans (this change reached it through Redis); its plan comes back.
      this.init.onMembership?.(all.length)
      return false
    }
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
    const members = this.issue(next, error)
    this.replication.planIssued(next, error)
    const [planSeconds, broadcastSeconds] = [(planned - started) / 1e3, (performance.now() - planned) / 1e3]
    this.init.onReplan?.({ planSeconds, broadcastSeconds, members })
    return true
  }

  /** Makes `plan` current and hands it to this server's members; returns how many. */
  protected issue(plan: PlanMessage, error: WireError | undefined): number {
    this.current = plan
    this.currentError = error
    this.readiness.reset()
    let told = 0
    for (const m of this.members.values()) {
      if (m.owner !== undefined) continue // its own server tells it
      this.guard(() => m.sink.plan(plan))
      told++
    }
    this.guard(() => this.emit('plan', plan))
    for (const [version, peers] of this.earlyReady) {
      if (version < plan.version) this.earlyReady.delete(version)
      else if (version === plan.version) for (const p of peers) this.markReady(p)
    }
    this.earlyReady.delete(plan.version)
    return told
  }

  protected assertOpen(): void {
    if (this.closed) throw closedError(this.name)
  }

  protected guard(fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.init.onError?.(err)
    }
  }
}
