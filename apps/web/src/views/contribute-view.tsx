import { useContribute } from '../contribute/contribute-store.js'

const kib = (n: number) => (n < 10 * 1024 ? `${n} B` : `${(n / 1024).toFixed(0)} KiB`)

/** The "Contribute this GPU" toggle and what the tab is doing for the mesh. */
export function ContributeView() {
  const c = useContribute()
  const on = c.status === 'on'
  const busy = c.status === 'starting' || c.status === 'stopping'
  return (
    <section aria-labelledby="contribute-title" className="view">
      <h2 id="contribute-title">Contribute</h2>
      <label className="toggle">
        <input
          type="checkbox"
          role="switch"
          aria-checked={on || c.status === 'starting'}
          checked={on || c.status === 'starting'}
          disabled={busy}
          onChange={(e) => void (e.target.checked ? c.start() : c.stop())}
        />
        Contribute this GPU
      </label>
      <label>
        Memory budget (GiB){' '}
        <input
          type="number"
          min={0.25}
          max={64}
          step={0.25}
          value={c.memoryGiB}
          disabled={on || busy}
          onChange={(e) => c.setMemory(Number(e.target.value) || 1)}
        />
      </label>
      <dl className="facts" data-testid="contribute-status">
        <dt>status</dt>
        <dd>{c.status}</dd>
        <dt>backend</dt>
        <dd>
          {c.device === undefined ? '–' : c.device === 'webgpu' ? `WebGPU (${c.adapter})` : 'WASM (CPU)'}
        </dd>
        <dt>layers hosted</dt>
        <dd data-testid="contribute-layers">
          {c.layers ? `${c.layers.start}–${c.layers.end - 1}` : 'none yet'}
        </dd>
        <dt>steps served</dt>
        <dd data-testid="contribute-steps">{c.stepsServed}</dd>
        <dt>bytes in / out</dt>
        <dd data-testid="contribute-bytes">
          {kib(c.bytesIn)} / {kib(c.bytesOut)}
        </dd>
        <dt>votes agreed / disagreed</dt>
        <dd>{c.votes ? `${c.votes.agreements} / ${c.votes.disagreements}` : '–'}</dd>
        <dt>weights</dt>
        <dd data-testid="contribute-weights">
          {c.cached + c.downloaded === 0
            ? '–'
            : `${c.downloaded} tensors downloaded, ${c.cached} from this browser's cache`}
        </dd>
        <dt>peer id</dt>
        <dd data-testid="contribute-peer">{c.peerId ?? '–'}</dd>
      </dl>
      {c.error !== undefined && (
        <p role="alert" className="error">
          Could not join the mesh: {c.error}
        </p>
      )}
      {c.log.length > 0 && (
        <details>
          <summary>log</summary>
          <pre>{c.log.join('\n')}</pre>
        </details>
      )}
    </section>
  )
}
