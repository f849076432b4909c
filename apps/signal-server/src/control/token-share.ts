import { ClusterError } from '../errors.js'
import type { ClusterStore } from './cluster-store.js'
import type { JoinAdmission } from './join-admission.js'
import { type JoinTokenRecord, parseJoinTokenRecord } from './join-tokens.js'

/**
 * Per-peer join tokens across a cluster. Each server keeps its own token file and publishes its
 * records (the tokens' SHA-256, never the tokens) in Redis; every sync takes in the records of
 * the servers whose token generation moved. So a token issued on one server admits its peer on
 * every server a moment later, its binding to the first identity that used it follows it, and a
 * revocation anywhere refuses it everywhere and drops the peer from the server it is joined to.
 * Merging only moves a token forward (unbound to bound, live to revoked), so the servers agree
 * whatever order they read each other in.
 */
export class TokenShare {
  /** This server's records as last written (id -> JSON), and its generation. */
  private readonly written = new Map<string, string>()
  private gen = 0
  /** Other servers' generations as last read. */
  private readonly seen = new Map<string, string>()

  constructor(
    private readonly store: ClusterStore,
    private readonly serverId: string,
    private readonly admission: JoinAdmission,
    private readonly ttlMs: number,
    private readonly onRejected: (err: ClusterError) => void,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Publishes what changed of this server's records, and merges the live others' new ones. */
  async sync(others: readonly string[]): Promise<void> {
    const tokens = this.admission.tokens
    if (tokens === undefined) return
    await this.publish(tokens.shared())
    const gens = await this.store.tokenGens(others)
    for (const [i, server] of others.entries()) {
      const gen = gens[i]
      if (gen === null || gen === undefined || this.seen.get(server) === gen) continue
      const records: JoinTokenRecord[] = []
      for (const [id, raw] of Object.entries(await this.store.tokens(server))) {
        const record = this.parse(server, id, raw)
        if (record !== undefined) records.push(record)
      }
      const { refused, error } = this.admission.mergeTokens(records)
      for (let n = 0; n < refused; n++) {
        this.onRejected(
          new ClusterError('ERR_CLUSTER_PAYLOAD', `server ${server} shares a clashing join token`),
        )
      }
      if (error !== undefined) this.onError(error)
      this.seen.set(server, gen)
    }
  }

  private parse(server: string, id: string, raw: string): JoinTokenRecord | undefined {
    try {
      const record = parseJoinTokenRecord(JSON.parse(raw))
      if (record.id !== id) throw new TypeError(`record ${record.id} is stored under ${id.slice(0, 32)}`)
      return record
    } catch (err) {
      const why = (err as Error)?.message ?? String(err)
      this.onRejected(new ClusterError('ERR_CLUSTER_PAYLOAD', `join token from ${server}: ${why}`))
      return undefined
    }
  }

  private async publish(own: readonly JoinTokenRecord[]): Promise<void> {
    if (own.length === 0 && this.written.size === 0) return
    // Redis lost them (a restart): write them all again, under a new generation so readers look.
    if (this.written.size > 0 && (await this.store.tokenGens([this.serverId]))[0] === null) {
      this.written.clear()
    }
    const set = new Map<string, string>()
    const ids = new Set<string>()
    for (const r of own) {
      const json = JSON.stringify(r)
      ids.add(r.id)
      if (this.written.get(r.id) !== json) set.set(r.id, json)
    }
    const drop = [...this.written.keys()].filter((id) => !ids.has(id))
    if (set.size > 0 || drop.length > 0) this.gen++
    // Written every sync, even unchanged, to renew the expiry that cleans up after a dead server.
    await this.store.putTokens(this.serverId, set, drop, this.gen, this.ttlMs)
    for (const [id, json] of set) this.written.set(id, json)
    for (const id of drop) this.written.delete(id)
  }
}
