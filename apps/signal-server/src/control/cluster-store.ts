import type { createClient } from 'redis'
import { ClusterError } from '../errors.js'
import { ClusterSeal } from './cluster-seal.js'

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
    /** Seals every value written and opens every value read (see cluster-seal.ts). */
    private readonly seal: ClusterSeal = new ClusterSeal(undefined),
    /** A value read that does not open: it is skipped, as if absent. */
    private readonly onForged: (err: ClusterError) => void = () => {},
  ) {}

  private sealed(key: string, value: string, field?: string): string {
    return this.seal.seal(field === undefined ? key : `${key}#${field}`, value)
  }

  private opened(key: string, raw: string, field?: string): string | null {
    try {
      return this.seal.open(field === undefined ? key : `${key}#${field}`, raw)
    } catch (err) {
      if (!(err instanceof ClusterError)) throw err
      this.onForged(err)
      return null
    }
  }

  /** A hash's entries that open under their field; the others are reported and left out. */
  private openedHash(key: string, hash: Record<string, string>): Record<string, string> {
    if (!this.seal.sealed) return hash
    const out: Record<string, string> = {}
    for (const [field, raw] of Object.entries(hash)) {
      const value = this.opened(key, raw, field)
      if (value !== null) out[field] = value
    }
    return out
  }

  private key(...parts: string[]): string {
    return this.prefix + parts.join(':')
  }

  private meshKey(mesh: string, ...parts: string[]): string {
    return this.key('mesh', mesh, ...parts)
  }

  async beat(server: string, value: string, ttlMs: number): Promise<void> {
    const key = this.key('server', server)
    await this.redis.set(key, this.sealed(key, value), { expiration: { type: 'PX', value: ttlMs } })
  }

  async beats(servers: readonly string[]): Promise<(string | null)[]> {
    if (servers.length === 0) return []
    const keys = servers.map((s) => this.key('server', s))
    const values = await this.redis.mGet(keys)
    return values.map((v, i) =>
      typeof v === 'string' && v.length <= CLUSTER_LIMITS.valueBytes
        ? this.opened(keys[i] as string, v)
        : null,
    )
  }

  /** Lists a member and bumps the server's generation in one step, so a reader sees both or neither. */
  async putMember(mesh: string, server: string, id: string, record: string, beat: Beat): Promise<void> {
    const members = this.meshKey(mesh, 'members', server)
    const live = this.key('server', server)
    await this.redis
      .multi()
      .hSet(members, id, this.sealed(members, record, id))
      .pExpire(members, beat.membersTtlMs)
      .sAdd(this.meshKey(mesh, 'servers'), server)
      .set(live, this.sealed(live, beat.value), { expiration: { type: 'PX', value: beat.ttlMs } })
      .exec()
  }

  async dropMember(mesh: string, server: string, id: string, beat: Beat): Promise<void> {
    const live = this.key('server', server)
    await this.redis
      .multi()
      .hDel(this.meshKey(mesh, 'members', server), id)
      .set(live, this.sealed(live, beat.value), { expiration: { type: 'PX', value: beat.ttlMs } })
      .exec()
  }

  /** Writes this server's whole member list (after Redis lost it, or at start). */
  async replaceMembers(mesh: string, server: string, records: ReadonlyMap<string, string>, ttlMs: number) {
    const members = this.meshKey(mesh, 'members', server)
    const tx = this.redis.multi().del(members)
    if (records.size > 0) {
      const sealed = [...records].map(([id, record]) => [id, this.sealed(members, record, id)])
      tx.hSet(members, Object.fromEntries(sealed)).pExpire(members, ttlMs)
    }
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
    return this.openedHash(members, await this.redis.hGetAll(members))
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
      arguments: [server, this.sealed(this.meshKey(mesh, 'plan'), plan)],
    })
    return reply === 1
  }

  async plan(mesh: string): Promise<string | null> {
    const key = this.meshKey(mesh, 'plan')
    const value = await this.redis.get(key)
    if (value !== null && value.length > CLUSTER_LIMITS.valueBytes) {
      throw new ClusterError(
        'ERR_CLUSTER_PAYLOAD',
        `the stored plan of mesh "${mesh}" is ${value.length} bytes`,
      )
    }
    return value === null ? null : this.opened(key, value)
  }

  async markReady(mesh: string, version: number, peers: readonly string[]): Promise<void> {
    if (peers.length === 0) return
    const key = this.meshKey(mesh, 'ready', String(version))
    await this.redis
      .multi()
      .sAdd(
        key,
        peers.map((p) => this.sealed(key, p)),
      )
      .pExpire(key, 3_600_000)
      .exec()
  }

  async readyPeers(mesh: string, version: number): Promise<string[]> {
    const key = this.meshKey(mesh, 'ready', String(version))
    if ((await this.redis.sCard(key)) > CLUSTER_LIMITS.peers) {
      throw new ClusterError('ERR_CLUSTER_PAYLOAD', `too many ready marks for plan ${version} of "${mesh}"`)
    }
    const marks = (await this.redis.sMembers(key)).map((m) => this.opened(key, m))
    return marks.filter((p): p is string => p !== null)
  }

  async exclude(mesh: string, peers: ReadonlyMap<string, string>): Promise<void> {
    if (peers.size === 0) return
    const tx = this.redis.multi()
    const key = this.meshKey(mesh, 'excluded')
    for (const [peer, reason] of peers) tx.hSetNX(key, peer, this.sealed(key, reason, peer))
    await tx.exec()
  }

  async exclusions(mesh: string): Promise<Record<string, string>> {
    const key = this.meshKey(mesh, 'excluded')
    if ((await this.redis.hLen(key)) > CLUSTER_LIMITS.peers) {
      throw new ClusterError('ERR_CLUSTER_PAYLOAD', `too many exclusions in mesh "${mesh}"`)
    }
    return this.openedHash(key, await this.redis.hGetAll(key))
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
    if (set.size > 0) {
      tx.hSet(key, Object.fromEntries([...set].map(([peer, e]) => [peer, this.sealed(key, e, peer)])))
    }
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
    return this.openedHash(key, await this.redis.hGetAll(key))
  }

  /**
   * Sets and drops entries of this server's join-token records (see token-share.ts) and stores
   * its token generation, which readers check before reading the records again.
   */
  async putTokens(
    server: string,
    set: ReadonlyMap<string, string>,
    drop: readonly string[],
    gen: number,
    ttlMs: number,
  ): Promise<void> {
    const key = this.key('tokens', server)
    const genKey = this.key('tokens-gen', server)
    const tx = this.redis.multi()
    if (set.size > 0) {
      tx.hSet(key, Object.fromEntries([...set].map(([id, r]) => [id, this.sealed(key, r, id)])))
    }
    if (drop.length > 0) tx.hDel(key, [...drop])
    await tx
      .pExpire(key, ttlMs)
      .set(genKey, this.sealed(genKey, String(gen)), { expiration: { type: 'PX', value: ttlMs } })
      .exec()
  }

  /** Each server's token generation (null: none, or not sealed by this cluster). */
  async tokenGens(servers: readonly string[]): Promise<(string | null)[]> {
    if (servers.length === 0) return []
    const keys = servers.map((s) => this.key('tokens-gen', s))
    const values = await this.redis.mGet(keys)
    return values.map((v, i) =>
      typeof v === 'string' && v.length <= 128 ? this.opened(keys[i] as string, v) : null,
    )
  }

  /** One server's join-token records as raw entries; throws ERR_CLUSTER_PAYLOAD past the cap. */
  async tokens(server: string): Promise<Record<string, string>> {
    const key = this.key('tokens', server)
    if ((await this.redis.hLen(key)) > CLUSTER_LIMITS.peers) {
      throw new ClusterError('ERR_CLUSTER_PAYLOAD', `server ${server} shares too many join tokens`)
    }
    return this.openedHash(key, await this.redis.hGetAll(key))
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
