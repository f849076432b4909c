import { ControlError } from '@butterfly/core'
import { JoinRefusedError } from '../errors.js'
import type { JoinTokenRecord, JoinTokenStore, JoinTokenView } from './join-tokens.js'
import type { Mesh } from './mesh.js'
import type { MeshRegistry } from './mesh-registry.js'

/** Live members allowed per source address, by default (a test machine runs ~12 workers on 127.0.0.1). */
export const DEFAULT_MAX_PEERS_PER_ADDRESS = 32
/**
 * Join attempts per minute per source address, by default (a token bucket that holds as many):
 * generous enough for a test machine whose every worker and test client joins from 127.0.0.1;
 * a server facing the internet would rather set 60 or less.
 */
export const DEFAULT_JOIN_RATE = 600
/** Buckets kept before full ones are forgotten. */
const MAX_BUCKETS = 10_000

export interface JoinAdmissionOptions {
  /** Per-peer tokens; absent: only the shared mesh token admits. */
  readonly tokens?: JoinTokenStore | undefined
  /** The shared mesh token alone admits nobody: a per-peer token is needed. Default false. */
  readonly requirePeerTokens?: boolean | undefined
  readonly maxPeersPerAddress?: number | undefined
  /** Join attempts per minute per address. */
  readonly joinRate?: number | undefined
  readonly now?: (() => number) | undefined
}

/** Which credential admitted a join. */
export interface Credential {
  /** The per-peer token's id; undefined when the shared mesh token (or an open mesh) admitted it. */
  readonly tokenId: string | undefined
}

/** `::ffff:1.2.3.4` and `1.2.3.4` are one address. */
export function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address
}

/**
 * The join rules beyond the proof of key possession: per-peer tokens, live members per source
 * address, join attempts per minute per address. One instance per server, for every mesh.
 */
export class JoinAdmission {
  readonly maxPeersPerAddress: number
  readonly joinRate: number
  private readonly now: () => number
  private readonly live = new Map<string, number>()
  private readonly buckets = new Map<string, { tokens: number; at: number }>()

  constructor(
    private readonly registry: MeshRegistry,
    private readonly options: JoinAdmissionOptions = {},
  ) {
    this.maxPeersPerAddress = options.maxPeersPerAddress ?? DEFAULT_MAX_PEERS_PER_ADDRESS
    this.joinRate = options.joinRate ?? DEFAULT_JOIN_RATE
    this.now = options.now ?? Date.now
  }

  get tokens(): JoinTokenStore | undefined {
    return this.options.tokens
  }

  /** Spends one join attempt of `address`'s bucket; throws ERR_JOIN_RATE with a retry hint. */
  attempt(address: string): void {
    const now = this.now()
    const perMs = this.joinRate / 60_000
    const b = this.buckets.get(address) ?? { tokens: this.joinRate, at: now }
    b.tokens = Math.min(this.joinRate, b.tokens + (now - b.at) * perMs)
    b.at = now
    if (b.tokens < 1) {
      const retryAfterMs = Math.ceil((1 - b.tokens) / perMs)
      this.buckets.set(address, b)
      throw new JoinRefusedError(
        'ERR_JOIN_RATE',
        `too many joins from ${address} (limit ${this.joinRate} a minute): retry after ${Math.ceil(retryAfterMs / 1000)} s`,
        retryAfterMs,
      )
    }
    b.tokens -= 1
    this.buckets.set(address, b)
    if (this.buckets.size > MAX_BUCKETS) this.forgetFullBuckets(now)
  }

  /**
   * Checks the join's token for `mesh` and binds a per-peer token to `peerId` on first use.
   * Throws ERR_MESH_TOKEN, ERR_PEER_TOKEN_REQUIRED or a per-peer token refusal.
   */
  credential(mesh: Mesh, token: string, peerId: string): Credential {
    const tokenId = this.options.tokens?.admit(token, mesh.name, peerId)
    if (tokenId !== undefined) return { tokenId }
    if (this.options.requirePeerTokens === true) {
      throw new JoinRefusedError(
        'ERR_PEER_TOKEN_REQUIRED',
        `mesh "${mesh.name}" admits per-peer join tokens only: ask the operator for one`,
      )
    }
    if (!mesh.checkToken(token)) {
      throw new ControlError('ERR_MESH_TOKEN', `wrong or missing token for mesh "${mesh.name}"`)
    }
    return { tokenId: undefined }
  }

  /**
   * Counts one more live member from `address`; throws ERR_PEERS_PER_ADDRESS over the cap.
   * Returns the release, which may be called any number of times.
   */
  occupy(address: string): () => void {
    const n = this.live.get(address) ?? 0
    if (n >= this.maxPeersPerAddress) {
      throw new JoinRefusedError(
        'ERR_PEERS_PER_ADDRESS',
        `${address} already has ${n} live peers, the most one address may have (--max-peers-per-address)`,
      )
    }
    this.live.set(address, n + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const left = (this.live.get(address) ?? 1) - 1
      if (left <= 0) this.live.delete(address)
      else this.live.set(address, left)
    }
  }

  /** Live members from `address` (tests, /health). */
  liveFrom(address: string): number {
    return this.live.get(address) ?? 0
  }

  /**
   * Revokes a per-peer token; the peer bound to it, if joined, is removed from its mesh at once
   * (and disconnected). Returns the token as it was before, or undefined for an unknown id.
   */
  revoke(id: string): JoinTokenView | undefined {
    const before = this.options.tokens?.revoke(id)
    if (before?.boundPeerId != null) this.registry.get(before.mesh)?.remove([before.boundPeerId], 'revoked')
    return before
  }

  /**
   * Takes in the join tokens another server of the cluster shares (see JoinTokenStore.merge). A
   * peer of this server bound to a token revoked there is removed from its mesh here at once.
   */
  mergeTokens(records: readonly JoinTokenRecord[]): { refused: number; error: unknown } {
    const store = this.options.tokens
    if (store === undefined) return { refused: 0, error: undefined }
    const { revoked, refused, error } = store.merge(records)
    for (const r of revoked) {
      const mesh = r.boundPeerId === null ? undefined : this.registry.get(r.mesh)
      if (mesh?.isLocal(r.boundPeerId as string)) mesh.remove([r.boundPeerId as string], 'revoked')
    }
    return { refused, error }
  }

  private forgetFullBuckets(now: number): void {
    const perMs = this.joinRate / 60_000
    for (const [address, b] of this.buckets) {
      if (b.tokens + (now - b.at) * perMs >= this.joinRate) this.buckets.delete(address)
    }
  }
}
