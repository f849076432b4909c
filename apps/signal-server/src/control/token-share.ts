import { ClusterError } from '../errors.js'
import type { ClusterStore } from './cluster-store.js'
import type { JoinAdmission } from './join-admission.js'
import { type JoinTokenRecord, type JoinTokenStore, parseJoinTokenRecord } from './join-tokens.js'
import { OwnEntries } from './own-entries.js'

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
  /** This server's records as last written, and its generation. */
  private readonly written = new OwnEntries()
  private gen = 0
  /** The store's version when its records were last published (see JoinTokenStore.version). */
  private published = -1
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
    await this.publish(tokens)
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

  private async publish(tokens: JoinTokenStore): Promise<void> {
    if (tokens.size === 0 && !this.written.any) return
    // Redis lost them (a restart): write them all again, under a new generation so readers look.
    if (this.written.any && (await this.store.tokenGens([this.serverId]))[0] === null) {
      this.written.forget()
      this.published = -1
    }
    // Up to 10,000 records: serialised again only when the store changed since.
    const changes =
      tokens.version === this.published
        ? { set: new Map<string, string>(), drop: [] }
        : this.written.changes(new Map(tokens.shared().map((r) => [r.id, JSON.stringify(r)])))
    if (changes.set.size > 0 || changes.drop.length > 0) this.gen++
    // Written every sync, even unchanged, to renew the expiry that cleans up after a dead server.
    await this.store.putTokens(this.serverId, changes.set, changes.drop, this.gen, this.ttlMs)
    this.written.wrote(changes)
    this.published = tokens.version
  }
}
