import type { createClient } from 'redis'
import { ClusterError } from '../errors.js'

export type RedisClient = ReturnType<typeof createClient>

/** A server's liveness value (its member generation) and how long it and its member lists live. */
export interface Beat {
  readonly value: string
  readonly ttlMs: number
  readonly membersTtlMs: number
}

/** Bounds on what one read takes from Redis: a rogue writer cannot make a server load more. */
export const CLUSTER_LIMITS = {
  /** Bytes of one value (a member record, a plan). */
  valueBytes: 256 * 1024,
  /** Members one server may list for one mesh. */
  membersPerServer: 20_000,
  /** Servers one mesh may list. */
  servers: 256,
  /** Excluded peers or ready marks of one mesh. */
  peers: 50_000,
} as const

// Renews or releases the planning lease only for its holder, and writes a plan only while holding
// it, so a server that lost the lease without noticing cannot overwrite its successor's plan.
const RENEW =
  "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
const RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
const PUT_PLAN =
  "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[2], ARGV[2]) return 1 end return 0"

/**
 * The cluster's state in Redis. Each server writes only its own records (its liveness key, its
 * members) and reads everyone's; the plan is written only by the lease holder. Keys:
 * `{prefix}server:{id}` liveness (expires), `{prefix}mesh:{name}:servers` who lists members,
 * `…:members:{server}` one server's members, `…:evidence:{server}` what its gateway saw of each
 * peer, `…:lease`, `…:plan`, `…:ready:{version}`, `…:excluded`.
 */
export class ClusterStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  private key(...parts: string[]): string {
    return this.prefix + parts.join(':')
  }

  private meshKey(mesh: string, ...parts: string[]): string {
    return this.key('mesh', mesh, ...parts)
  }

  async beat(server: string, value: string, ttlMs: number): Promise<void> {
    await this.redis.set(this.key('server', server), value, { expiration: { type: 'PX', value: ttlMs } })
  }

  async beats(servers: readonly string[]): Promise<(string | null)[]> {
    if (servers.length === 0) return []
    const values = await this.redis.mGet(servers.map((s) => this.key('server', s)))
    return values.map((v) => (typeof v === 'string' && v.length <= CLUSTER_LIMITS.valueBytes ? v : null))
  }

  /** Lists a member and bumps the server's generation in one step, so a reader sees both or neither. */
  async putMember(mesh: string, server: string, id: string, record: string, beat: Beat): Promise<void> {
    const members = this.meshKey(mesh, 'members', server)
    await this.redis
      .multi()
      .hSet(members, id, record)
      .pExpire(members, beat.membersTtlMs)
      .sAdd(this.meshKey(mesh, 'servers'), server)
      .set(this.key('server', server), beat.value, { expiration: { type: 'PX', value: beat.ttlMs } })
      .exec()
  }

  async dropMember(mesh: string, server: string, id: string, beat: Beat): Promise<void> {
    await this.redis
      .multi()
      .hDel(this.meshKey(mesh, 'members', server), id)
      .set(this.key('server', server), beat.value, { expiration: { type: 'PX', value: beat.ttlMs } })
      .exec()
  }

  /** Writes this server's whole member list (after Redis lost it, or at start). */
  async replaceMembers(mesh: string, server: string, records: ReadonlyMap<string, string>, ttlMs: number) {
    const members = this.meshKey(mesh, 'members', server)
    const tx = this.redis.multi().del(members)
    if (records.size > 0) tx.hSet(members, Object.fromEntries(records)).pExpire(members, ttlMs)
    await tx.sAdd(this.meshKey(mesh, 'servers'), server).exec()
  }

  async touchMembers(mesh: string, server: string, ttlMs: number): Promise<number> {
    const members = this.meshKey(mesh, 'members', server)
    const [count] = await this.redis.multi().hLen(members).pExpire(members, ttlMs).exec()
    return Number(count)
  }

  /** One server's members as raw records; throws ERR_CLUSTER_PAYLOAD past the cap. */
  async members(mesh: string, server: string): Promise<Record<string, string>> {
    const members = this.meshKey(mesh, 'members', server)
    const count = await this.redis.hLen(members)
    if (count > CLUSTER_LIMITS.membersPerServer) {
      throw new ClusterError(
        'ERR_CLUSTER_PAYLOAD',
        `server ${server} lists ${count} members of mesh "${mesh}"`,
      )
    }
    return this.redis.hGetAll(members)
  }

  async servers(mesh: string): Promise<string[]> {
    const key = this.meshKey(mesh, 'servers')
    const count = await this.redis.sCard(key)
    if (count > CLUSTER_LIMITS.servers) {
      throw new ClusterError('ERR_CLUSTER_PAYLOAD', `mesh "${mesh}" lists ${count} servers`)
    }
    return this.redis.sMembers(key)
  }

  /** A server found dead: its member list goes. */
  async forgetServer(mesh: string, server: string): Promise<void> {
    await this.redis
      .multi()
      .sRem(this.meshKey(mesh, 'servers'), server)
      .del(this.meshKey(mesh, 'members', server))
      .del(this.meshKey(mesh, 'evidence', server))
      .exec()
  }

  /** Takes the planning lease if nobody holds it; true when this server now holds it. */
  async acquireLease(mesh: string, server: string, ttlMs: number): Promise<boolean> {
    const reply = await this.redis.set(this.meshKey(mesh, 'lease'), server, {
      condition: 'NX',
      expiration: { type: 'PX', value: ttlMs },
    })
    return reply === 'OK'
  }

  async renewLease(mesh: string, server: string, ttlMs: number): Promise<boolean> {
    const reply = await this.redis.eval(RENEW, {
      keys: [this.meshKey(mesh, 'lease')],
      arguments: [server, String(ttlMs)],
    })
    return reply === 1
  }

  async releaseLease(mesh: string, server: string): Promise<void> {
    await this.redis.eval(RELEASE, { keys: [this.meshKey(mesh, 'lease')], arguments: [server] })
  }

  async leaseHolder(mesh: string): Promise<string | null> {
    return this.redis.get(this.meshKey(mesh, 'lease'))
  }

  /** Stores the plan if `server` holds the lease; false when it does not (any more). */
  async putPlan(mesh: string, server: string, plan: string): Promise<boolean> {
    const reply = await this.redis.eval(PUT_PLAN, {
      keys: [this.meshKey(mesh, 'lease'), this.meshKey(mesh, 'plan')],
      arguments: [server, plan],
    })
    return reply === 1
  }

  async plan(mesh: string): Promise<string | null> {
    const value = await this.redis.get(this.meshKey(mesh, 'plan'))
    if (value !== null && value.length > CLUSTER_LIMITS.valueBytes) {
      throw new ClusterError(
        'ERR_CLUSTER_PAYLOAD',
        `the stored plan of mesh "${mesh}" is ${value.length} bytes`,
      )
    }
    return value
  }

  async markReady(mesh: string, version: number, peers: readonly string[]): Promise<void> {
    if (peers.length === 0) return
    const key = this.meshKey(mesh, 'ready', String(version))
    await this.redis
      .multi()
      .sAdd(key, [...peers])
      .pExpire(key, 3_600_000)
      .exec()
  }

  async readyPeers(mesh: string, version: number): Promise<string[]> {
    const key = this.meshKey(mesh, 'ready', String(version))
    if ((await this.redis.sCard(key)) > CLUSTER_LIMITS.peers) {
      throw new ClusterError('ERR_CLUSTER_PAYLOAD', `too many ready marks for plan ${version} of "${mesh}"`)
    }
    return this.redis.sMembers(key)
  }

  async exclude(mesh: string, peers: ReadonlyMap<string, string>): Promise<void> {
    if (peers.size === 0) return
    const tx = this.redis.multi()
    for (const [peer, reason] of peers) tx.hSetNX(this.meshKey(mesh, 'excluded'), peer, reason)
    await tx.exec()
  }

  async exclusions(mesh: string): Promise<Record<string, string>> {
    const key = this.meshKey(mesh, 'excluded')
    if ((await this.redis.hLen(key)) > CLUSTER_LIMITS.peers) {
      throw new ClusterError('ERR_CLUSTER_PAYLOAD', `too many exclusions in mesh "${mesh}"`)
    }
    return this.redis.hGetAll(key)
  }

  /** Sets and drops entries of this server's evidence about peers (see cluster-evidence.ts). */
  async putEvidence(
    mesh: string,
    server: string,
    set: ReadonlyMap<string, string>,
    drop: readonly string[],
    ttlMs: number,
  ): Promise<void> {
    const key = this.meshKey(mesh, 'evidence', server)
    const tx = this.redis.multi()
    if (set.size > 0) tx.hSet(key, Object.fromEntries(set))
    if (drop.length > 0) tx.hDel(key, [...drop])
    await tx.pExpire(key, ttlMs).exec()
  }

  /** How many entries this server's evidence has in Redis (0 after a Redis restart). */
  async evidenceCount(mesh: string, server: string): Promise<number> {
    return this.redis.hLen(this.meshKey(mesh, 'evidence', server))
  }

  /** One server's evidence as raw entries; throws ERR_CLUSTER_PAYLOAD past the cap. */
  async evidence(mesh: string, server: string): Promise<Record<string, string>> {
    const key = this.meshKey(mesh, 'evidence', server)
    if ((await this.redis.hLen(key)) > CLUSTER_LIMITS.peers) {
      throw new ClusterError('ERR_CLUSTER_PAYLOAD', `server ${server} holds too much evidence in "${mesh}"`)
    }
    return this.redis.hGetAll(key)
  }

  /** A server leaving cleanly: its liveness key and member lists go at once. */
  async leave(server: string, meshes: readonly string[]): Promise<void> {
    const tx = this.redis.multi().del(this.key('server', server))
    for (const mesh of meshes) {
      tx.sRem(this.meshKey(mesh, 'servers'), server)
        .del(this.meshKey(mesh, 'members', server))
        .del(this.meshKey(mesh, 'evidence', server))
    }
    await tx.exec()
  }
}
