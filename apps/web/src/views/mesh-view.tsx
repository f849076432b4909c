import { useEffect, useState } from 'react'
import { type MeshInfo, type ThroughputSample, useMesh } from '../store/mesh-store.js'
import { groupPeers } from './mesh-groups.js'
import { StageGroups } from './stage-groups.js'
import { StageMap } from './stage-map.js'
import { ThroughputChart } from './throughput-chart.js'

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`

/** Every mesh the server hosts, from /health every 2 s. */
export function MeshView() {
  const { meshes, error, refresh, throughput } = useMesh()
  useEffect(() => {
    const ctl = new AbortController()
    void refresh(ctl.signal)
    const timer = setInterval(() => void refresh(ctl.signal), 2000)
    return () => {
      clearInterval(timer)
      ctl.abort()
    }
  }, [refresh])
  return (
    <section aria-labelledby="mesh-title" className="view">
      <h2 id="mesh-title">Mesh</h2>
      {error !== undefined && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {meshes.map((m) => (
        <MeshPanel key={m.name} mesh={m} throughput={throughput[m.name] ?? []} />
      ))}
    </section>
  )
}

function MeshPanel({ mesh, throughput }: { mesh: MeshInfo; throughput: readonly ThroughputSample[] }) {
  const [collapsed, setCollapsed] = useState<ReadonlySet<string>>(new Set())
  const groups = groupPeers(mesh, throughput.at(-1)?.tokensPerSec ?? 0)
  const open = (key: string) => {
    const next = new Set(collapsed)
    next.delete(key)
    setCollapsed(next)
    // After the render that opens it, bring the group into view and focus its heading.
    requestAnimationFrame(() => {
      const header = document.querySelector<HTMLButtonElement>(`[data-testid="group-${key}"] h4 button`)
      header?.scrollIntoView({ block: 'nearest' })
      header?.focus()
    })
  }
  return (
    <article className="mesh" data-testid={`mesh-${mesh.name}`}>
      <h3>
        {mesh.name}: {mesh.modelId}{' '}
        <span className={mesh.ready ? 'ok' : 'warn'}>{mesh.ready ? 'ready' : 'not ready'}</span>
      </h3>
      <p className="meta">
        {mesh.peers.length} peer{mesh.peers.length === 1 ? '' : 's'}, plan {mesh.plan.version} with{' '}
        {mesh.plan.stages.length} stage
        {mesh.plan.stages.length === 1 ? '' : 's'}
      </p>
      {mesh.planError && <p className="warn">No plan: {mesh.planError.message}</p>}
      <StageMap name={mesh.name} groups={groups} onOpen={open} />
      <ThroughputChart name={mesh.name} samples={throughput} />
      <StageGroups name={mesh.name} groups={groups} collapsed={collapsed} setCollapsed={setCollapsed} />
      <details open={mesh.peers.length <= 20}>
        <summary>All peers as a table</summary>
        {/* A region that scrolls sideways on a phone, so the keyboard can scroll it too. */}
        {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region must be focusable */}
        <section className="table-scroll" aria-label={`peers of mesh ${mesh.name}`} tabIndex={0}>
          <PeerTable mesh={mesh} />
        </section>
      </details>
    </article>
  )
}

function PeerTable({ mesh }: { mesh: MeshInfo }) {
  const votes = new Map((mesh.reputation?.peers ?? []).map((v) => [v.peerId, v]))
  const rtt = new Map((mesh.links ?? []).map((l) => [l.peerId, l.rttMs]))
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">peer</th>
          <th scope="col">class</th>
          <th scope="col">memory</th>
          <th scope="col">layer-steps/s</th>
          <th scope="col">round trip</th>
          <th scope="col">votes agreed / disagreed</th>
          <th scope="col">state</th>
        </tr>
      </thead>
      <tbody>
        {mesh.peers.map((p) => {
          const v = votes.get(p.id)
          return (
            <tr key={p.id}>
              <td title={p.id}>{p.name}</td>
              <td>{p.numericClass}</td>
              <td>{gib(p.memoryBytes)}</td>
              <td>{p.layerStepsPerSec.toFixed(0)}</td>
              <td>{rtt.has(p.id) ? `${rtt.get(p.id)?.toFixed(1)} ms` : '–'}</td>
              <td>{v ? `${v.agreements} / ${v.disagreements}` : '–'}</td>
              <td className={p.excluded ? 'warn' : ''}>
                {p.excluded
                  ? `excluded (${p.excludedReason ?? 'outvoted'})`
                  : v?.trusted
                    ? 'trusted'
                    : 'active'}
              </td>
            </tr>
          )
        })}
      </tbody>
    </table>
  )
}
