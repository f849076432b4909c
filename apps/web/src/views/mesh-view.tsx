import { useEffect } from 'react'
import { type MeshInfo, type ThroughputSample, useMesh } from '../store/mesh-store.js'
import { ThroughputChart } from './throughput-chart.js'
import { TopologyGraph } from './topology-graph.js'

const short = (id: string) => (id.length > 10 ? `${id.slice(0, 8)}…` : id)
const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`

/** Peers, the plan's stages and replicas, and each peer's votes, from /health every 2 s. */
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
  const names = new Map(mesh.peers.map((p) => [p.id, p.name]))
  const votes = new Map((mesh.reputation?.peers ?? []).map((v) => [v.peerId, v]))
  const rtt = new Map((mesh.links ?? []).map((l) => [l.peerId, l.rttMs]))
  return (
    <article className="mesh" data-testid={`mesh-${mesh.name}`}>
      <h3>
        {mesh.name}: {mesh.modelId}{' '}
        <span className={mesh.ready ? 'ok' : 'warn'}>{mesh.ready ? 'ready' : 'not ready'}</span>
      </h3>
      {mesh.planError && <p className="warn">No plan: {mesh.planError.message}</p>}
      <TopologyGraph mesh={mesh} />
      <ThroughputChart name={mesh.name} samples={throughput} />
      <h4>Plan {mesh.plan.version}</h4>
      <ol className="stages">
        {mesh.plan.stages.map((s, i) => (
          <li key={`${s.start}-${s.end}`} data-testid={`stage-${i}`}>
            layers {s.start}–{s.end - 1}: {names.get(s.peerId) ?? short(s.peerId)}
            {(s.replicas ?? []).length > 0 &&
              ` + replicas ${(s.replicas ?? []).map((r) => names.get(r) ?? short(r)).join(', ')}`}
          </li>
        ))}
      </ol>
      <h4>Peers</h4>
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
                  {p.excluded ? 'excluded (outvoted)' : v?.trusted ? 'trusted' : 'active'}
                </td>
              </tr>
            )
          })}
        </tbody>
      </table>
    </article>
  )
}
