import { useEffect } from 'react'
import { useContribute } from '../contribute/contribute-store.js'
import { bytes, DownloadBar, phaseSentence } from './contribute-progress.js'

/** The "Contribute this GPU" switch and, in plain words, what the tab is doing for the mesh. */
export function ContributeView() {
  const c = useContribute()
  const on = c.status === 'on'
  // While waiting for a lost server, the switch stays usable: turning it off stops the wait.
  const busy = (c.status === 'starting' && c.phase !== 'reconnecting') || c.status === 'stopping'
  const { check } = c
  useEffect(() => {
    void check()
  }, [check])
  return (
    <section aria-labelledby="contribute-title" className="view contribute">
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
      <p className="phase" role="status" data-testid="contribute-phase" data-phase={c.phase}>
        {phaseSentence(c)}
      </p>
      <DownloadBar c={c} />
      <div className="budget">
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
        {c.suggestion && (
          <p className="meta" data-testid="contribute-suggestion">
            Suggested: {c.suggestion.gib} GiB, because {c.suggestion.why}.{' '}
            <button
              type="button"
              disabled={on || busy || c.memoryGiB === c.suggestion.gib}
              onClick={() => c.setMemory(c.suggestion?.gib ?? 1)}
            >
              Use {c.suggestion.gib} GiB
            </button>
          </p>
        )}
      </div>
      <dl className="facts" data-testid="contribute-status">
        <dt>status</dt>
        <dd>{c.status}</dd>
        <dt>backend</dt>
        <dd>
          {c.device === undefined ? '–' : c.device === 'webgpu' ? `WebGPU (${c.adapter})` : 'WASM (CPU)'}
          {c.deviceReason && (
            <span className="meta" data-testid="contribute-device-reason">
              {' '}
              · {c.deviceReason}
            </span>
          )}
        </dd>
        <dt>layers hosted</dt>
        <dd data-testid="contribute-layers">
          {c.layers ? `${c.layers.start}–${c.layers.end - 1}` : 'none yet'}
        </dd>
        <dt>steps served</dt>
        <dd data-testid="contribute-steps">{c.stepsServed}</dd>
        <dt>tokens helped produce</dt>
        <dd data-testid="contribute-tokens">{c.tokensHelped}</dd>
        <dt>votes agreed / disagreed</dt>
        <dd data-testid="contribute-votes">
          {c.votes ? `${c.votes.agreements} / ${c.votes.disagreements}` : '–'}
        </dd>
        <dt>bytes in / out</dt>
        <dd data-testid="contribute-bytes">
          {bytes(c.bytesIn)} / {bytes(c.bytesOut)}
        </dd>
        <dt>weights</dt>
        <dd data-testid="contribute-weights">
          {c.cached + c.downloaded === 0
            ? '–'
            : `${c.downloaded} tensors downloaded, ${c.cached} from this browser's cache`}
        </dd>
        <dt>peer id</dt>
        <dd data-testid="contribute-peer">{c.peerId ?? '–'}</dd>
      </dl>
      {c.error !== undefined && c.phase !== 'reconnecting' && (
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
