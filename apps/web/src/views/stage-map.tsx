import { type PeerGroup, peerName } from './mesh-groups.js'

const COL = 150
const BOX_W = 130
const BOX_H = 84
const TOP = 16
const LEFT = 190
const GW = 110

interface Props {
  readonly name: string
  readonly groups: readonly PeerGroup[]
  readonly onOpen: (key: string) => void
}

/** The three lines a box shows: its group, who or how many, how busy (or how many flagged). */
function lines(g: PeerGroup): [string, string, string] {
  const flagged = g.peers.filter((p) => p.state === 'flagged' || p.state === 'excluded').length
  const only = g.peers.length === 1 ? g.peers[0] : undefined
  return [
    g.key === 'idle' ? 'No layers' : g.title,
    only ? peerName(only) : `${g.peers.length} peers`,
    g.utilisation !== undefined
      ? `~${Math.round(g.utilisation * 100)}% busy`
      : flagged > 0
        ? `${flagged} flagged`
        : '',
  ]
}

/** A box's accessible name: the words it shows first (WCAG 2.5.3), then what the picture says. */
const summary = (g: PeerGroup) =>
  [
    lines(g)
      .filter((l) => l !== '')
      .join(' '),
    `${g.peers.length} peer${g.peers.length === 1 ? '' : 's'}`,
    g.medianRttMs === undefined ? undefined : `median round trip ${g.medianRttMs.toFixed(1)} ms`,
  ]
    .filter((s) => s !== undefined)
    .join('; ')

/**
 * The mesh as a picture that stays readable at hundreds of peers: the gateway, one box per
 * stage (its layers, how many peers hold them, how busy it is) and one for peers without
 * layers. Edges are the gateway's WebRTC links, labelled with their median round trip. Each box
 * is a button (Tab, Enter) that opens its group of peers below.
 */
export function StageMap({ name, groups, onOpen }: Props) {
  const width = LEFT + COL * Math.max(1, groups.length)
  // Below the boxes: room for the edges, which run under them, and their round-trip labels.
  const height = TOP + BOX_H + 44
  const gy = TOP + BOX_H / 2 - 20
  return (
    <div className="stage-map">
      <svg
        viewBox={`0 0 ${width} ${height}`}
        // Never drawn larger than life (a mesh of two groups), nor too small to read on a phone.
        style={{ minWidth: `${Math.min(width, 120 + groups.length * 90)}px`, maxWidth: `${width}px` }}
        data-testid={`topology-${name}`}
      >
        <title>{`mesh ${name}: ${groups.map(summary).join('; ')}`}</title>
        {groups.map((g, i) => {
          if (g.key === 'idle') return null
          // From the gateway, under the boxes before it, up into the bottom of this stage's box.
          const x2 = LEFT + COL * i + BOX_W / 2
          const y2 = TOP + BOX_H
          const x1 = 10 + GW
          const y1 = gy + 20
          const low = TOP + BOX_H + 26
          return (
            <g key={`edge-${g.key}`} className="link">
              <path d={`M ${x1} ${y1} C ${x1 + 40} ${low}, ${x2} ${low}, ${x2} ${y2}`} fill="none" />
              {g.medianRttMs !== undefined && (
                <text x={x2 + 6} y={y2 + 14} className="rtt">
                  {g.medianRttMs.toFixed(1)} ms
                </text>
              )}
            </g>
          )
        })}
        <g className="node gateway">
          <rect x={10} y={gy} width={GW} height={40} rx={8} />
          <text x={10 + GW / 2} y={gy + 25} textAnchor="middle">
            gateway
          </text>
        </g>
        {groups.map((g, i) => {
          const x = LEFT + COL * i
          const [title, count, note] = lines(g)
          return (
            // biome-ignore lint/a11y/useSemanticElements: SVG has no <button>; role, tabIndex and keys make the box one
            <g
              key={g.key}
              className={`node stage-box${/flagged/.test(note) ? ' flagged' : ''}`}
              role="button"
              tabIndex={0}
              aria-label={`${summary(g)}; show its peers`}
              onClick={() => onOpen(g.key)}
              onKeyDown={(e) => {
                if (e.key !== 'Enter' && e.key !== ' ') return
                e.preventDefault()
                onOpen(g.key)
              }}
            >
              <rect x={x} y={TOP} width={BOX_W} height={BOX_H} rx={8} />
              {/* Each line ends in a space (collapsed on screen) so its words stay apart in the name. */}
              <text x={x + BOX_W / 2} y={TOP + 18} textAnchor="middle">
                {title}{' '}
              </text>
              <text x={x + BOX_W / 2} y={TOP + 38} textAnchor="middle" className="count">
                {count}{' '}
              </text>
              {g.utilisation !== undefined && (
                <>
                  <rect x={x + 10} y={TOP + 50} width={BOX_W - 20} height={8} className="util-track" />
                  <rect
                    x={x + 10}
                    y={TOP + 50}
                    width={(BOX_W - 20) * g.utilisation}
                    height={8}
                    className="util-bar"
                  />
                </>
              )}
              <text x={x + BOX_W / 2} y={TOP + 74} textAnchor="middle" className="sub">
                {note}
              </text>
            </g>
          )
        })}
      </svg>
    </div>
  )
}
