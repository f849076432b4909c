import { useMemo, useState } from 'react'
import { describePeer, type PeerGroup, type PlacedPeer, peerName, peerSubtitle } from './mesh-groups.js'
import { PeerDetails } from './peer-details.js'

interface Props {
  readonly name: string
  readonly groups: readonly PeerGroup[]
  /** Groups the user collapsed (the rest are open). */
  readonly collapsed: ReadonlySet<string>
  readonly setCollapsed: (keys: ReadonlySet<string>) => void
}

const matches = (p: PlacedPeer, q: string) =>
  q === '' || peerName(p).toLowerCase().includes(q) || p.id.toLowerCase().includes(q)

/**
 * Every peer, grouped by stage with counts: a search, expand or collapse per group (or all),
 * and compact or detailed boxes. Each peer is a button: Tab reaches it, Enter opens its details.
 */
export function StageGroups({ name, groups, collapsed, setCollapsed }: Props) {
  const total = groups.reduce((n, g) => n + g.peers.length, 0)
  const [query, setQuery] = useState('')
  const [compact, setCompact] = useState(total > 40)
  const [selected, setSelected] = useState<string | undefined>()
  const q = query.trim().toLowerCase()
  const shown = useMemo(
    () =>
      groups
        .map((g) => ({ g, peers: g.peers.filter((p) => matches(p, q)) }))
        .filter((x) => x.peers.length > 0),
    [groups, q],
  )
  const found = shown.reduce((n, x) => n + x.peers.length, 0)
  const chosen = groups.flatMap((g) => g.peers).find((p) => p.id === selected)
  const toggle = (key: string) => {
    const next = new Set(collapsed)
    if (next.has(key)) next.delete(key)
    else next.add(key)
    setCollapsed(next)
  }
  return (
    <div className="stage-groups">
      <div className="group-controls">
        <label>
          Find a peer{' '}
          <input
            type="search"
            value={query}
            placeholder="name or id"
            onChange={(e) => setQuery(e.target.value)}
            data-testid={`peer-search-${name}`}
          />
        </label>
        <span className="meta" data-testid={`peer-count-${name}`} aria-live="polite">
          {q === '' ? `${total} peer${total === 1 ? '' : 's'}` : `${found} of ${total} peers match`}
        </span>
        <button type="button" onClick={() => setCollapsed(new Set())}>
          Expand all
        </button>
        <button type="button" onClick={() => setCollapsed(new Set(groups.map((g) => g.key)))}>
          Collapse all
        </button>
        <button type="button" aria-pressed={compact} onClick={() => setCompact(!compact)}>
          Compact
        </button>
      </div>
      {shown.map(({ g, peers }) => {
        // A search opens every group with a match.
        const open = q !== '' || !collapsed.has(g.key)
        const bodyId = `group-${name}-${g.key}`
        return (
          <section key={g.key} className="peer-group" data-testid={`group-${g.key}`} id={`${bodyId}-section`}>
            <h4>
              <button type="button" aria-expanded={open} aria-controls={bodyId} onClick={() => toggle(g.key)}>
                {open ? '▾' : '▸'} {g.title}
              </button>{' '}
              <span className="meta">
                {peers.length === g.peers.length
                  ? `${g.peers.length}`
                  : `${peers.length} of ${g.peers.length}`}{' '}
                peer
                {g.peers.length === 1 ? '' : 's'}
                {g.medianRttMs !== undefined && ` · median round trip ${g.medianRttMs.toFixed(1)} ms`}
                {g.utilisation !== undefined && ` · about ${Math.round(g.utilisation * 100)}% busy`}
              </span>
            </h4>
            {open && (
              <ul id={bodyId} className={`peer-chips${compact ? ' compact' : ''}`}>
                {peers.map((p) => (
                  <li key={p.id}>
                    <button
                      type="button"
                      className={`chip ${p.state}${selected === p.id ? ' selected' : ''}`}
                      data-peer={p.id}
                      aria-label={describePeer(p, compact)}
                      aria-pressed={selected === p.id}
                      title={describePeer(p)}
                      onClick={() => setSelected(selected === p.id ? undefined : p.id)}
                    >
                      <span className="chip-name">{peerName(p)} </span>
                      {!compact && <span className="sub">{peerSubtitle(p)}</span>}
                    </button>
                  </li>
                ))}
              </ul>
            )}
            {open && chosen !== undefined && peers.some((p) => p.id === chosen.id) && (
              <PeerDetails placed={chosen} />
            )}
          </section>
        )
      })}
    </div>
  )
}
