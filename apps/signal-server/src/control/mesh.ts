import {
  ControlError,
  type PeerCapabilities,
  type PlanMessage,
  parsePeerId,
  parseSignalEnvelope,
  peerIdFromPublicKey,
  type SignalData,
  stagePeers,
  toBase64url,
  type WireError,
} from '@butterfly/core'
import { MeshCore } from './mesh-core.js'
import type {
  EvidenceSource,
  LocalPeerHandle,
  LocalPeerHandlers,
  Member,
  MemberRecord,
  MemberSink,
  MeshEvents,
  MeshInit,
  MeshReplication,
  PeerEvidence,
  PeerLeftReason,
  WorkerInfo,
} from './mesh-member.js'
import { closedError, nextReadyPlan, type Planner } from './mesh-plan.js'
import { secretEquals } from './secret-equals.js'

export type {
  EvidenceSource,
  LocalPeerHandle,
  LocalPeerHandlers,
  MemberRecord,
  MemberSink,
  MeshEvents,
  MeshInit,
  MeshReplication,
  PeerEvidence,
  PeerLeftReason,
  Planner,
  WorkerInfo,
}

/**
 * One mesh: its model, its members and the plan over them. Every membership change among
 * workers re-plans; a plan that changed gets the next `version` and goes to every member (one
 * that did not goes only to a peer joining). Signals only travel between members of this mesh.
 */
export class Mesh extends MeshCore {
  /** The gateway's votes, which a cluster shares (see EvidenceSource); the last one given wins. */
  evidenceSource: EvidenceSource | undefined

  /** Shares this mesh's state with the other servers of a cluster; call before any peer joins. */
  replicate(replication: MeshReplication): void {
    this.replication = replication
  }

  provideEvidence(source: EvidenceSource): void {
    this.evidenceSource = source
  }

  get requiresToken(): boolean {
    return this.init.meshToken !== undefined
  }

  checkToken(token: string): boolean {
    return this.init.meshToken === undefined || secretEquals(token, this.init.meshToken)
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
    this.replication.excluded(peerId, reason)
    this.replan()
    return true
  }

  /**
   * Adds a worker whose key the caller has verified, under the id derived from that key
   * (peerIdFromPublicKey), re-plans, and returns the id. A key already in the mesh is refused.
   */
  join(capabilities: PeerCapabilities, sink: MemberSink, publicKey: Uint8Array): string {
    this.assertOpen()
    const id = peerIdFromPublicKey(publicKey)
    const before = this.members.get(id)
    if (before !== undefined && before.owner === undefined) {
      throw new ControlError(
        'ERR_CONTROL_INPUT',
        `identity already connected: ${id} is in mesh "${this.name}"`,
      )
    }
    // A key held by another server's member has proved itself here just now: this session wins
    // (a worker failing over from a server that has not noticed it left). The new session may
    // hold no stage yet (a tab starts afresh): it is ready again once it says so, and the 'ready'
    // that follows has the gateway dial it anew rather than keep a connection to the old one.
    if (before !== undefined) this.readiness.unmark(id)
    const member = { id, sink, capabilities, publicKey: Uint8Array.from(publicKey), lastSeen: this.now() }
    this.members.set(id, { ...member, joinedAt: Math.max(this.now(), (before?.joinedAt ?? 0) + 1) })
    this.replication.memberUp({
      id,
      joinedAt: (this.members.get(id) as Member).joinedAt,
      capabilities,
      publicKey: toBase64url(publicKey),
    })
    if (before === undefined) this.guard(() => this.emit('peer-joined', id))
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
      joinedAt: this.now(),
    })
    this.replication.memberUp({ id, joinedAt: this.now() })
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
    this.replication.stageReady(peerId, planVersion)
    this.markReady(peerId)
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

  /** Resolves with the first plan whose every stage is ready (now, or when it becomes so). */
  waitForReadyPlan(signal?: AbortSignal): Promise<PlanMessage> {
    if (this.isReady()) return Promise.resolve(this.current)
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (this.closed) return Promise.reject(closedError(this.name))
    return nextReadyPlan(this, this.name, signal)
  }

  /** Removes a member only while `sink` is still its session (not one that replaced it since). */
  leave(peerId: string, sink: MemberSink, reason: PeerLeftReason): void {
    if (this.members.get(peerId)?.sink === sink) this.remove([peerId], reason)
  }

  /**
   * A member connected to server `owner`, as that server's record says. Of two sessions of one
   * identity the later join wins; a local one that lost is cut off ('moved').
   */
  applyMember(owner: string, record: MemberRecord, publicKey: Uint8Array | undefined): void {
    if (this.closed) return
    const before = this.members.get(record.id)
    if (before !== undefined) {
      if (before.owner === owner && before.joinedAt === record.joinedAt) return
      const mine = before.owner ?? this.replication.serverId
      if (before.joinedAt > record.joinedAt || (before.joinedAt === record.joinedAt && mine > owner)) return
    }
    this.members.set(record.id, {
      id: record.id,
      sink: this.replication.remoteSink(owner, record.id),
      capabilities: record.capabilities,
      publicKey,
      lastSeen: Number.POSITIVE_INFINITY,
      owner,
      joinedAt: record.joinedAt,
    })
    if (before?.owner === undefined && before !== undefined) {
      this.replication.memberDown(record.id)
      this.guard(() => before.sink.drop?.('moved'))
    }
    if (before === undefined) this.guard(() => this.emit('peer-joined', record.id))
    const same = JSON.stringify(before?.capabilities) === JSON.stringify(record.capabilities)
    if (before === undefined || !same) this.replan()
  }

  /** Members of server `owner` that its records no longer list (they left, or it died). */
  dropRemote(owner: string, ids: readonly string[], reason: PeerLeftReason): void {
    this.remove(
      ids.filter((id) => this.members.get(id)?.owner === owner),
      reason,
    )
  }

  /** The server holding `peerId`'s connection (this one's id for local members); undefined: no member. */
  ownerOf(peerId: string): string | undefined {
    const m = this.members.get(peerId)
    return m === undefined ? undefined : (m.owner ?? this.replication.serverId)
  }

  /** Whether `peerId` is a member connected to this server. */
  isLocal(peerId: string): boolean {
    const m = this.members.get(peerId)
    return m !== undefined && m.owner === undefined
  }

  /** An id for this server's own peer `role` in this mesh, unique among a cluster's servers. */
  localPeerId(role: string): string {
    const base = `${role}-${this.name}`
    const server = this.replication.serverId
    return server === 'local' ? base.slice(0, 64) : `${base.slice(0, 54)}-${server}`
  }

  /** The ids of members connected to server `owner`. */
  membersOf(owner: string): string[] {
    return [...this.members.values()].filter((m) => m.owner === owner).map((m) => m.id)
  }

  /** A plan the cluster's planner issued; false (ignored) unless newer than the current one. */
  adoptPlan(plan: PlanMessage, error: WireError | undefined): boolean {
    if (this.closed || plan.version <= this.current.version) return false
    this.issue(plan, error)
    return true
  }

  /** A peer of another server loaded its stage of `planVersion`. */
  applyReady(peerId: string, planVersion: number): void {
    if (planVersion === this.current.version) this.markReady(peerId)
    if (planVersion <= this.current.version || this.earlyReady.size >= 64) return
    const early = this.earlyReady.get(planVersion) ?? new Set<string>()
    if (early.size < 4096) early.add(peerId)
    this.earlyReady.set(planVersion, early)
  }

  /** Another server excluded a peer (its gateway outvoted it, or the peer failed to load). */
  applyExclusion(peerId: string, reason: string): void {
    if (this.excluded.has(peerId) || !this.members.has(peerId)) return
    this.excluded.set(peerId, reason)
    this.init.onExcludedPeer?.(peerId, reason)
    this.replan()
  }

  /** This server just became the cluster's planner: plans over what it knows now. */
  planNow(): void {
    if (!this.closed) this.replan()
  }
}
