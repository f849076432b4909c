import { useState } from 'react'
import type { MeshInfo, MeshPeer, PeerVotes } from '../store/mesh-store.js'

const COL = 150
const ROW = 64
const NODE_W = 120
const NODE_H = 44
const TOP = 44
/** Room between the gateway and the first stage for the links' round-trip labels. */
const LEFT = 210

interface Placed {
  readonly x: number
  readonly y: number
  readonly peer: MeshPeer | undefined
  readonly id: string
  readonly role: string
}

const short = (id: string) => (id.length > 10 ? `${id.slice(0, 8)}…` : id)

/**
 * The mesh as a picture: the gateway (the coordinator every hidden state passes through) on
 * the left, one column per pipeline stage holding its primary and replicas, idle peers last.
 * Each edge is a real WebRTC link, labelled with its measured round trip. Every peer is a
 * focusable element whose accessible name says everything the picture shows.
 */
export function TopologyGraph({ mesh }: { mesh: MeshInfo }) {
  const [selected, setSelected] = useState<string | undefined>()
  const byId = new Map(mesh.peers.map((p) => [p.id, p]))
  const votes = new Map((mesh.reputation?.peers ?? []).map((v) => [v.peerId, v]))
  const rtt = new Map((mesh.links ?? []).map((l) => [l.peerId, l.rttMs]))
  const placed: Placed[] = []
  const columns: string[] = []
  mesh.plan.stages.forEach((s, i) => {
    columns.push(`stage ${i} · layers ${s.start}–${s.end - 1}`)
    ;[s.peerId, ...(s.replicas ?? [])].forEach((id, r) => {
      placed.push({
        x: LEFT + COL * i,
        y: TOP + r * ROW,
        peer: byId.get(id),
        id,
        role: r === 0 ? `stage ${i} primary` : `stage ${i} replica`,
      })
    })
  })
  const inPlan = new Set(placed.map((p) => p.id))
  const idle = mesh.peers.filter((p) => !inPlan.has(p.id))
  if (idle.length > 0) columns.push('no layers')
  idle.forEach((p, r) => {
    placed.push({
      x: LEFT + COL * (columns.length - 1),
      y: TOP + r * ROW,
      peer: p,
      id: p.id,
      role: p.excluded ? 'excluded' : 'idle',
    })
  })
  const rows = Math.max(1, ...placed.map((p) => (p.y - TOP) / ROW + 1))
  const width = LEFT + COL * Math.max(1, columns.length)
  const height = TOP + rows * ROW
  const gateway = { x: 10, y: TOP + ((rows - 1) * ROW) / 2 }
  const chosen = placed.find((p) => p.id === selected)
  return (
    <figure className="topology">
      <svg viewBox={`0 0 ${width} ${height}`} data-testid={`topology-${mesh.name}`}>
        <title>{`topology of mesh ${mesh.name}: ${placed.length} peers in ${mesh.plan.stages.length} stages`}</title>
        {columns.map((c, i) => (
          <text key={c} x={LEFT + COL * i + NODE_W / 2} y={18} textAnchor="middle" className="col-label">
            {c}
          </text>
        ))}
        {placed
          .filter((p) => inPlan.has(p.id))
          .map((p) => {
            const ms = rtt.get(p.id)
            const x1 = gateway.x + NODE_W
            const y1 = gateway.y + NODE_H / 2
            const x2 = p.x
            const y2 = p.y + NODE_H / 2
            return (
              <g key={`edge-${p.id}`} className="link">
                <line x1={x1} y1={y1} x2={x2} y2={y2} />
                {ms !== undefined && (
                  <text
                    x={x1 + (x2 - x1) * 0.55}
                    y={y1 + (y2 - y1) * 0.55 - 5}
                    textAnchor="middle"
                    className="rtt"
                  >
                    {ms.toFixed(1)} ms
                  </text>
                )}
              </g>
            )
          })}
        <g className="node gateway">
          <rect x={gateway.x} y={gateway.y} width={NODE_W} height={NODE_H} rx={8} />
          <text x={gateway.x + NODE_W / 2} y={gateway.y + 27} textAnchor="middle">
            gateway
          </text>
        </g>
        {placed.map((p) => (
          <PeerNode
            key={`node-${p.id}`}
            placed={p}
            votes={votes.get(p.id)}
            rttMs={rtt.get(p.id)}
            selected={selected === p.id}
            onSelect={() => setSelected(selected === p.id ? undefined : p.id)}
          />
        ))}
      </svg>
      {chosen && <PeerDetails placed={chosen} votes={votes.get(chosen.id)} rttMs={rtt.get(chosen.id)} />}
      <figcaption className="meta">
        Edges are the gateway's WebRTC links with their median round trip; hidden states travel gateway →
        stage → gateway.
      </figcaption>
    </figure>
  )
}

function stateOf(peer: MeshPeer | undefined, votes: PeerVotes | undefined): string {
  if (peer?.excluded) return 'excluded'
  if (votes?.flagged) return 'flagged'
  return votes?.trusted ? 'trusted' : 'active'
}

function describePeer(placed: Placed, votes: PeerVotes | undefined, rttMs: number | undefined): string {
  const { peer, id, role } = placed
  return [
    `${peer?.name ?? short(id)}, ${role}`,
    peer ? peer.numericClass : 'left the mesh',
    rttMs === undefined ? undefined : `round trip ${rttMs.toFixed(1)} ms`,
    votes ? `votes ${votes.agreements} agreed, ${votes.disagreements} disagreed` : undefined,
    stateOf(peer, votes),
  ]
    .filter((s) => s !== undefined)
    .join('; ')
}

interface PeerNodeProps {
  readonly placed: Placed
  readonly votes: PeerVotes | undefined
  readonly rttMs: number | undefined
  readonly selected: boolean
  readonly onSelect: () => void
}

/** A peer box; Tab reaches it, Enter or Space (or a click) opens its details below the graph. */
function PeerNode({ placed, votes, rttMs, selected, onSelect }: PeerNodeProps) {
  const { x, y, peer, id } = placed
  const name = peer?.name ?? short(id)
  const label = describePeer(placed, votes, rttMs)
  return (
    // biome-ignore lint/a11y/useSemanticElements: SVG has no <button>; role, tabIndex and keys make the box one
    <g
      className={`node ${stateOf(peer, votes)}${selected ? ' selected' : ''}`}
      tabIndex={0}
      role="button"
      aria-pressed={selected}
      aria-label={label}
      data-peer={id}
      onClick={onSelect}
      onKeyDown={(e) => {
        if (e.key !== 'Enter' && e.key !== ' ') return
        e.preventDefault()
        onSelect()
      }}
    >
      <title>{label}</title>
      <rect x={x} y={y} width={NODE_W} height={NODE_H} rx={8} />
      <text x={x + NODE_W / 2} y={y + 18} textAnchor="middle">
        {name.length > 16 ? `${name.slice(0, 15)}…` : name}
      </text>
      <text x={x + NODE_W / 2} y={y + 35} textAnchor="middle" className="sub">
        {peer?.numericClass ?? '?'}
        {votes ? ` · ${votes.agreements}/${votes.disagreements}` : ''}
      </text>
    </g>
  )
}

function PeerDetails({ placed, votes, rttMs }: Omit<PeerNodeProps, 'selected' | 'onSelect'>) {
  const { peer, id, role } = placed
  return (
    <dl className="facts peer-details" aria-live="polite" data-testid="peer-details">
      <dt>peer</dt>
      <dd>
        {peer?.name ?? short(id)} <code>{id}</code>
      </dd>
      <dt>role</dt>
      <dd>{role}</dd>
      <dt>backend</dt>
      <dd>{peer ? `${peer.backend} (${peer.numericClass})` : 'left the mesh'}</dd>
      <dt>memory</dt>
      <dd>{peer ? `${(peer.memoryBytes / 2 ** 30).toFixed(1)} GiB` : '–'}</dd>
      <dt>round trip</dt>
      <dd>{rttMs === undefined ? 'not measured yet' : `${rttMs.toFixed(1)} ms`}</dd>
      <dt>votes</dt>
      <dd>
        {votes
          ? `${votes.agreements} agreed, ${votes.disagreements} disagreed, ${votes.timeouts} timed out`
          : 'none yet'}
      </dd>
      <dt>state</dt>
      <dd>{stateOf(peer, votes)}</dd>
    </dl>
  )
}
