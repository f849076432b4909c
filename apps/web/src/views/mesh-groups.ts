import type { MeshInfo, MeshPeer, PeerVotes } from '../store/mesh-store.js'

/** A peer as the mesh view shows it: where it sits in the plan and what the gateway measured. */
export interface PlacedPeer {
  readonly id: string
  readonly peer: MeshPeer | undefined
  readonly role: string
  readonly votes: PeerVotes | undefined
  readonly rttMs: number | undefined
  readonly state: 'trusted' | 'active' | 'flagged' | 'excluded'
}

/** One stage of the plan (or the peers with no layers): its peers and its figures. */
export interface PeerGroup {
  readonly key: string
  readonly title: string
  readonly peers: readonly PlacedPeer[]
  /** Median round trip of the gateway's links to this group's peers. */
  readonly medianRttMs: number | undefined
  /**
   * How busy the stage's primary is, estimated: tokens/s × the stage's layers ÷ the primary's
   * measured layer-steps/s. Undefined for peers with no layers, or before any throughput.
   */
  readonly utilisation: number | undefined
}

const short = (id: string) => (id.length > 10 ? `${id.slice(0, 8)}…` : id)
export const peerName = (p: PlacedPeer) => p.peer?.name ?? short(p.id)

function median(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

function stateOf(peer: MeshPeer | undefined, votes: PeerVotes | undefined): PlacedPeer['state'] {
  if (peer?.excluded) return 'excluded'
  if (votes?.flagged) return 'flagged'
  return votes?.trusted ? 'trusted' : 'active'
}

/** The plan's stages in order, then the peers without layers: every peer exactly once. */
export function groupPeers(mesh: MeshInfo, tokensPerSec: number): PeerGroup[] {
  const byId = new Map(mesh.peers.map((p) => [p.id, p]))
  const votes = new Map((mesh.reputation?.peers ?? []).map((v) => [v.peerId, v]))
  const rtt = new Map((mesh.links ?? []).map((l) => [l.peerId, l.rttMs]))
  const place = (id: string, role: string): PlacedPeer => {
    const peer = byId.get(id)
    const v = votes.get(id)
    return { id, peer, role, votes: v, rttMs: rtt.get(id), state: stateOf(peer, v) }
  }
  const seen = new Set<string>()
  const groups: PeerGroup[] = mesh.plan.stages.map((s, i) => {
    const ids = [s.peerId, ...(s.replicas ?? [])]
    for (const id of ids) seen.add(id)
    const peers = ids.map((id, r) => place(id, r === 0 ? `stage ${i} primary` : `stage ${i} replica`))
    const speed = byId.get(s.peerId)?.layerStepsPerSec ?? 0
    return {
      key: `stage-${i}`,
      title: `Stage ${i} · layers ${s.start}–${s.end - 1}`,
      peers,
      medianRttMs: median(peers.flatMap((p) => (p.rttMs === undefined ? [] : [p.rttMs]))),
      utilisation:
        speed > 0 && tokensPerSec > 0 ? Math.min(1, (tokensPerSec * (s.end - s.start)) / speed) : undefined,
    }
  })
  const idle = mesh.peers
    .filter((p) => !seen.has(p.id))
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((p) => place(p.id, p.excluded ? 'excluded' : 'idle'))
  if (idle.length > 0)
    groups.push({
      key: 'idle',
      title: 'No layers',
      peers: idle,
      medianRttMs: undefined,
      utilisation: undefined,
    })
  return groups
}

/** What a peer's box shows under its name (when not compact): its class and round trip. */
export function peerSubtitle(p: PlacedPeer): string {
  return [
    p.peer?.numericClass ?? 'left the mesh',
    p.rttMs === undefined ? undefined : `${p.rttMs.toFixed(1)} ms`,
  ]
    .filter((s) => s !== undefined)
    .join(' · ')
}

/**
 * Everything a peer's box shows, as one sentence for its accessible name, starting with the
 * words on the box (WCAG 2.5.3: speech input users say what they see).
 */
export function describePeer(p: PlacedPeer, compact = true): string {
  return [
    compact ? `${peerName(p)}, ${p.role}` : `${peerName(p)} ${peerSubtitle(p)}, ${p.role}`,
    p.peer ? p.peer.numericClass : 'left the mesh',
    p.rttMs === undefined ? undefined : `round trip ${p.rttMs.toFixed(1)} ms`,
    p.votes ? `votes ${p.votes.agreements} agreed, ${p.votes.disagreements} disagreed` : undefined,
    p.state,
  ]
    .filter((s) => s !== undefined)
    .join('; ')
}
