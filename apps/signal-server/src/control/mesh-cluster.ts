import type { PlanMessage, SignalData, WireError } from '@butterfly/core'
import { ClusterError } from '../errors.js'
import { EvidenceShare } from './cluster-evidence.js'
import {
  parseBeat,
  parseExclusionReason,
  parseMemberRecord,
  parseServerId,
  parseStoredPlan,
  storedPlanJson,
} from './cluster-records.js'
import type { Beat, ClusterStore } from './cluster-store.js'
import type { MemberRecord, MemberSink, Mesh, MeshReplication } from './mesh.js'

export interface MeshClusterInit {
  readonly serverId: string
  readonly store: ClusterStore
  /** Sends a signal to the server holding `to` (socket.io's serverSideEmit through Redis). */
  readonly sendSignal: (owner: string, from: string, to: string, data: SignalData) => void
  /** Tells the other servers this mesh changed, so they read it now rather than next tick. */
  readonly hint: () => void
  /** How long a server's liveness key lives; it is rewritten every sync. */
  readonly livenessMs: number
  /** A server whose liveness key has been gone this long is dead: its members leave. */
  readonly deadAfterMs: number
  /** How long the planning lease lasts unless renewed (every sync). */
  readonly leaseMs: number
  /** A record, plan or message from another server that was refused, and why. */
  readonly onRejected: (err: ClusterError) => void
  /** Redis failed; the sync is retried next tick with what this server knew. */
  readonly onError: (err: unknown) => void
  readonly now?: () => number
}

/**
 * Keeps one mesh's replica in step with the rest of its cluster through Redis. Writes go out as
 * they happen (memberUp, planIssued, …); reads happen in sync(), every tick and on every hint.
 * Each server rewrites what Redis lost of its own records at the next sync, so a Redis restart
 * costs a tick, not a peer.
 */
export class MeshCluster implements MeshReplication {
  planning = false
  private mesh: Mesh | undefined
  /** This server's members as stored (id -> record JSON), and their generation. */
  private readonly own = new Map<string, string>()
  private gen = 0
  private rewrite = true
  /** Other servers: the generation last read, and since when their liveness key is missing. */
  private readonly seen = new Map<string, number>()
  private readonly missingSince = new Map<string, number>()
  /** Peers of this server that loaded their stage of the current plan (rewritten if Redis lost them). */
  private readonly ownReady = new Set<string>()
  private ownReadyVersion = -1
  private readonly sinks = new Map<string, MemberSink>()
  private readonly pending = new Set<Promise<unknown>>()
  private readonly now: () => number
  private closed = false
  /** Other servers whose liveness key was there at the last read. */
  private live: string[] = []
  private readonly evidence: EvidenceShare

  constructor(private readonly init: MeshClusterInit) {
    this.now = init.now ?? Date.now
    const guarded = <T>(fn: () => T) => this.guarded(fn)
    this.evidence = new EvidenceShare(init.store, init.serverId, init.deadAfterMs * 4, guarded)
  }

  get serverId(): string {
    return this.init.serverId
  }

  /** The other servers whose liveness key was there at the last sync. */
  get liveServers(): readonly string[] {
    return this.live
  }

  attach(mesh: Mesh): void {
    this.mesh = mesh
    mesh.replicate(this)
  }

  memberUp(record: MemberRecord): void {
    const json = JSON.stringify(record)
    this.own.set(record.id, json)
    this.gen++
    const beat = this.beat()
    this.write(() => this.init.store.putMember(this.name, this.serverId, record.id, json, beat))
  }

  memberDown(peerId: string): void {
    if (!this.own.delete(peerId)) return
    this.ownReady.delete(peerId)
    this.gen++
    const beat = this.beat()
    this.write(() => this.init.store.dropMember(this.name, this.serverId, peerId, beat))
  }

  planIssued(plan: PlanMessage, error: WireError | undefined): void {
    const json = storedPlanJson(this.serverId, plan, error)
    this.write(async () => {
      if (!(await this.init.store.putPlan(this.name, this.serverId, json))) this.planning = false
    })
  }

  excluded(peerId: string, reason: string): void {
    this.write(() => this.init.store.exclude(this.name, new Map([[peerId, reason]])))
  }

  stageReady(peerId: string, planVersion: number): void {
    if (planVersion !== this.ownReadyVersion) this.ownReady.clear()
    this.ownReadyVersion = planVersion
    this.ownReady.add(peerId)
    this.write(() => this.init.store.markReady(this.name, planVersion, [peerId]))
  }

  remoteSink(owner: string, peerId: string): MemberSink {
    const key = `${owner}\0${peerId}`
    let sink = this.sinks.get(key)
    if (sink === undefined) {
      // Plans and departures reach it from its own server, which holds the same replica.
      sink = {
        signal: (from, data) => this.init.sendSignal(owner, from, peerId, data),
        plan: () => {},
        peerLeft: () => {},
      }
      if (this.sinks.size > 100_000) this.sinks.clear()
      this.sinks.set(key, sink)
    }
    return sink
  }

  private beat(): Beat {
    return {
      value: JSON.stringify({ gen: this.gen }),
      ttlMs: this.init.livenessMs,
      membersTtlMs: this.init.deadAfterMs * 4,
    }
  }

  private get name(): string {
    if (this.mesh === undefined) throw new Error('MeshCluster used before attach')
    return this.mesh.name
  }

  private write(op: () => Promise<unknown>): void {
    if (this.closed) return
    const done = op().then(
      () => this.init.hint(),
      (err) => {
        // Written again at the next sync: own records are rewritten whenever Redis lacks them.
        this.rewrite = true
        this.init.onError(err)
      },
    )
    this.pending.add(done)
    void done.finally(() => this.pending.delete(done))
  }

  /** Waits for every write issued so far (a sync reads after its own writes, and ends after them). */
  private async flush(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending])
  }

  /** One round: write this server's state, take or keep the lease, read everyone else's. */
  async sync(): Promise<void> {
    const mesh = this.mesh
    if (mesh === undefined || this.closed) return
    const { store, serverId } = this.init
    await this.flush()
    const beat = this.beat()
    await store.beat(serverId, beat.value, beat.ttlMs)
    const ttl = beat.membersTtlMs
    if (this.rewrite || (await store.touchMembers(mesh.name, serverId, ttl)) !== this.own.size) {
      this.rewrite = false
      await store.replaceMembers(mesh.name, serverId, this.own, ttl)
    }
    const wasPlanning = this.planning
    this.planning = wasPlanning
      ? await store.renewLease(mesh.name, serverId, this.init.leaseMs)
      : await store.acquireLease(mesh.name, serverId, this.init.leaseMs)
    // Read the others before planning: a new planner must see every member first.
    const planning = this.planning
    this.planning = wasPlanning && planning
    await this.readMembers(mesh)
    await this.readPlan(mesh)
    await this.readExclusions(mesh)
    await this.evidence.sync(mesh, this.live)
    this.planning = planning
    if (planning && !wasPlanning) mesh.planNow()
    if (planning) await this.restorePlan(mesh)
    await this.readReady(mesh)
    await this.flush()
  }

  private async readMembers(mesh: Mesh): Promise<void> {
    const { store, serverId } = this.init
    const listed = (await store.servers(mesh.name)).filter(
      (s) => s !== serverId && this.guarded(() => parseServerId(s, 'listed server')) !== undefined,
    )
    const others = [...new Set([...listed, ...this.seen.keys()])]
    const beats = await store.beats(others)
    this.live = others.filter((_, i) => typeof beats[i] === 'string')
    for (const [i, server] of others.entries()) {
      const raw = beats[i]
      if (raw === null || raw === undefined) {
        const since = this.missingSince.get(server) ?? this.now()
        this.missingSince.set(server, since)
        if (this.now() - since < this.init.deadAfterMs) continue
        // Gone past the grace (not a Redis restart that lost its key for a tick): its peers left.
        mesh.dropRemote(server, mesh.membersOf(server), 'timeout')
        this.seen.delete(server)
        this.missingSince.delete(server)
        await store.forgetServer(mesh.name, server)
        continue
      }
      this.missingSince.delete(server)
      const gen = this.guarded(() => parseBeat(raw).gen)
      if (gen === undefined || this.seen.get(server) === gen) continue
      const records = await store.members(mesh.name, server)
      const listedIds = new Set<string>()
      for (const [id, value] of Object.entries(records)) {
        const parsed = this.guarded(() => parseMemberRecord(id, value))
        if (parsed === undefined) continue
        listedIds.add(parsed.record.id)
        mesh.applyMember(server, parsed.record, parsed.publicKey)
      }
      mesh.dropRemote(
        server,
        mesh.membersOf(server).filter((id) => !listedIds.has(id)),
        'leave',
      )
      this.seen.set(server, gen)
    }
  }

  private async readPlan(mesh: Mesh): Promise<void> {
    const raw = await this.init.store.plan(mesh.name)
    if (raw === null) return
    const stored = this.guarded(() => parseStoredPlan(raw, mesh))
    if (stored === undefined || stored.plan.version === mesh.plan.version) return
    if (stored.plan.version < mesh.plan.version) {
      // The planner only ever writes newer plans: an older one is a replay (or a rogue's).
      this.init.onRejected(
        new ClusterError(
          'ERR_CLUSTER_STALE',
          `plan ${stored.plan.version} is older than the ${mesh.plan.version} this server holds`,
        ),
      )
      return
    }
    if (stored.planner !== this.serverId) {
      const holder = await this.init.store.leaseHolder(mesh.name)
      // The planner's lease may have lapsed since it wrote (it died); a plan from anyone else is forged.
      if (holder !== null && holder !== stored.planner) {
        this.init.onRejected(
          new ClusterError(
            'ERR_CLUSTER_NOT_PLANNER',
            `plan ${stored.plan.version} is from ${stored.planner}, not ${holder}`,
          ),
        )
        return
      }
    }
    mesh.adoptPlan(stored.plan, stored.error)
  }

  /** The planner puts its plan back when Redis lost it (or holds an older one). */
  private async restorePlan(mesh: Mesh): Promise<void> {
    const raw = await this.init.store.plan(mesh.name)
    const stored = raw === null ? undefined : this.guarded(() => parseStoredPlan(raw, mesh))
    // Rewritten under this server's name too when it took over: followers accept only the holder's.
    const current = stored?.plan.version === mesh.plan.version && stored.planner === this.serverId
    if (stored !== undefined && (current || stored.plan.version > mesh.plan.version)) return
    await this.init.store.putPlan(
      mesh.name,
      this.serverId,
      storedPlanJson(this.serverId, mesh.plan, mesh.planError),
    )
    const lost = new Map(mesh.excludedPeers().map((id) => [id, mesh.exclusionReason(id) ?? 'outvoted']))
    await this.init.store.exclude(mesh.name, lost)
  }

  private async readExclusions(mesh: Mesh): Promise<void> {
    for (const [peer, reason] of Object.entries(await this.init.store.exclusions(mesh.name))) {
      const why = this.guarded(() => parseExclusionReason(reason))
      if (why !== undefined && mesh.exclusionReason(peer) === undefined) mesh.applyExclusion(peer, why)
    }
  }

  private async readReady(mesh: Mesh): Promise<void> {
    const { version } = mesh.plan
    const marked = new Set(await this.init.store.readyPeers(mesh.name, version))
    const lost = version === this.ownReadyVersion ? [...this.ownReady].filter((p) => !marked.has(p)) : []
    if (lost.length > 0) await this.init.store.markReady(mesh.name, version, lost)
    for (const peer of marked) if (!mesh.isLocal(peer)) mesh.applyReady(peer, version)
  }

  private guarded<T>(fn: () => T): T | undefined {
    try {
      return fn()
    } catch (err) {
      if (err instanceof ClusterError) this.init.onRejected(err)
      else
        this.init.onRejected(new ClusterError('ERR_CLUSTER_PAYLOAD', String((err as Error)?.message ?? err)))
      return undefined
    }
  }

  /** Stops writing; with `leave`, removes this server's records at once rather than by expiry. */
  async close(leave: boolean): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (!leave || this.mesh === undefined) return
    await this.init.store.releaseLease(this.mesh.name, this.serverId)
  }
}
