import { PlacementError } from '../errors.js'

export type PeerBackend = 'cpu' | 'cuda' | 'wasm' | 'webgpu'

export const PEER_BACKENDS: readonly PeerBackend[] = ['cpu', 'cuda', 'wasm', 'webgpu']

/** What a peer announces about itself when it joins the mesh. */
export interface PeerCapacity {
  readonly id: string
  /** Memory it can give the model, in bytes. */
  readonly memoryBytes: number
  /** Layer-steps per second from a short benchmark: single-token layer evaluations per second. */
  readonly tokensPerSec: number
  readonly backend: PeerBackend
}

/** More peers than any model has layers to give them; bounds the planners' work on hostile input. */
export const MAX_PEERS = 4096

/**
 * Checks every announced capacity and returns copies sorted by id, so plans never depend on the
 * order peers joined in. Throws PlacementError ERR_PLACEMENT_INPUT naming the offending peer.
 */
export function validatePeers(peers: readonly PeerCapacity[]): PeerCapacity[] {
  if (!Array.isArray(peers)) throw inputError(`peers must be an array, got ${typeof peers}`)
  if (peers.length > MAX_PEERS) throw inputError(`at most ${MAX_PEERS} peers, got ${peers.length}`)
  const seen = new Set<string>()
  const out: PeerCapacity[] = []
  // An index loop, not forEach: a hole in a sparse array must be rejected, not skipped.
  for (let i = 0; i < peers.length; i++) {
    const peer: unknown = peers[i]
    if (typeof peer !== 'object' || peer === null) throw inputError(`peer #${i} must be an object`)
    const { id, memoryBytes, tokensPerSec, backend } = peer as Record<string, unknown>
    if (typeof id !== 'string' || id.length === 0) {
      throw inputError(`peer #${i}: id must be a non-empty string, got ${JSON.stringify(id) ?? String(id)}`)
    }
    const name = `peer ${JSON.stringify(id)}`
    if (seen.has(id)) throw inputError(`${name} appears more than once`)
    seen.add(id)
    for (const [field, v] of [
      ['memoryBytes', memoryBytes],
      ['tokensPerSec', tokensPerSec],
    ] as const) {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
        throw inputError(`${name}: ${field} must be a non-negative finite number, got ${String(v)}`)
      }
    }
    if (typeof backend !== 'string' || !(PEER_BACKENDS as readonly string[]).includes(backend)) {
      throw inputError(`${name}: backend must be one of ${PEER_BACKENDS.join(', ')}, got ${String(backend)}`)
    }
    out.push({
      id,
      memoryBytes: memoryBytes as number,
      tokensPerSec: tokensPerSec as number,
      backend: backend as PeerBackend,
    })
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

/** Peers that can run a layer at all: a peer with no memory or no throughput never gets a stage. */
export function usablePeers(peers: readonly PeerCapacity[]): PeerCapacity[] {
  return peers.filter((p) => p.memoryBytes > 0 && p.tokensPerSec > 0)
}

function inputError(message: string): PlacementError {
  return new PlacementError('ERR_PLACEMENT_INPUT', message)
}
