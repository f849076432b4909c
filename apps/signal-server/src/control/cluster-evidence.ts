import type { ReputationBook } from '@butterfly/core'
import { parsePeerEvidence, peerEvidenceJson } from './cluster-records.js'
import type { ClusterStore } from './cluster-store.js'
import type { EvidenceSource, Mesh, PeerEvidence } from './mesh.js'
import { OwnEntries } from './own-entries.js'

/** A gateway's ReputationBook as the evidence its mesh shares. */
export function evidenceFromBook(book: ReputationBook): EvidenceSource {
  return {
    evidence: () => new Map(book.snapshot().peers.map((p) => [p.peerId, p])),
    minRateSamples: book.minRateSamples,
    maxDisagreementRate: book.maxDisagreementRate,
  }
}

/**
 * Each gateway counts, per peer, the votes it saw that peer agree and disagree in. Alone, a
 * gateway's rate rule needs its own sample of a peer; with several servers each sees only its share
 * of a peer's work, and a liar that spreads rare lies over them would stay under every gateway's
 * sample size for longer. So each server publishes its counts in Redis, and every sync sums all
 * servers' counts and applies the same rate rule to the sums: a peer past it is excluded on every
 * server. Trust (who may lead a stage's steps) stays each gateway's own: it rests on what that
 * gateway checked, and another server's counts can only take a peer's layers away, never vouch
 * for it.
 */
export class EvidenceShare {
  private readonly written = new OwnEntries()

  constructor(
    private readonly store: ClusterStore,
    private readonly serverId: string,
    private readonly ttlMs: number,
    private readonly guarded: <T>(fn: () => T) => T | undefined,
  ) {}

  /** Writes what changed of this server's counts, reads the live others', and applies the rule. */
  async sync(mesh: Mesh, others: readonly string[]): Promise<void> {
    const source = mesh.evidenceSource
    const own = source?.evidence() ?? new Map<string, PeerEvidence>()
    await this.publish(mesh.name, own)
    if (source === undefined) return
    const sums = new Map<string, { agreements: number; disagreements: number }>()
    const add = (peer: string, e: PeerEvidence) => {
      const sum = sums.get(peer) ?? { agreements: 0, disagreements: 0 }
      sum.agreements += e.agreements
      sum.disagreements += e.disagreements
      sums.set(peer, sum)
    }
    for (const [peer, e] of own) add(peer, e)
    for (const server of others) {
      for (const [peer, raw] of Object.entries(await this.store.evidence(mesh.name, server))) {
        const e = this.guarded(() => parsePeerEvidence(peer, raw))
        if (e !== undefined) add(peer, e)
      }
    }
    for (const [peer, sum] of sums) {
      const n = sum.agreements + sum.disagreements
      if (n < source.minRateSamples || sum.disagreements / n <= source.maxDisagreementRate) continue
      if (mesh.exclusionReason(peer) === undefined) mesh.exclude(peer, 'outvoted')
    }
  }

  private async publish(name: string, own: ReadonlyMap<string, PeerEvidence>): Promise<void> {
    // Redis lost them (a restart): write them all again.
    if (this.written.any && (await this.store.evidenceCount(name, this.serverId)) === 0) this.written.forget()
    const changes = this.written.changes(new Map([...own].map(([peer, e]) => [peer, peerEvidenceJson(e)])))
    // Written every sync, even unchanged, to renew the expiry that cleans up after a dead server.
    if (changes.set.size === 0 && changes.drop.length === 0 && !this.written.any) return
    await this.store.putEvidence(name, this.serverId, changes.set, changes.drop, this.ttlMs)
    this.written.wrote(changes)
  }
}
