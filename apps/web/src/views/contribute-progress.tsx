import type { ContributeState } from '../contribute/contribute-store.js'

export const bytes = (n: number) =>
  n < 10 * 1024
    ? `${n} B`
    : n < 10 * 2 ** 20
      ? `${(n / 1024).toFixed(0)} KiB`
      : n < 10 * 2 ** 30
        ? `${(n / 2 ** 20).toFixed(1)} MiB`
        : `${(n / 2 ** 30).toFixed(2)} GiB`

const range = (r: { start: number; end: number } | undefined) =>
  r ? `${r.start}–${r.end - 1}` : '(range not known yet)'

function eta(c: ContributeState): string {
  const d = c.download
  if (d === undefined || d.done === 0 || d.done >= d.total) return ''
  const secs = ((d.updatedAt - d.startedAt) / 1000 / d.done) * (d.total - d.done)
  return secs < 1 ? ', under a second left' : `, about ${Math.ceil(secs)} s left`
}

/** One plain sentence: what the tab is doing for the mesh right now. */
export function phaseSentence(c: ContributeState): string {
  const where = c.device === 'webgpu' ? 'the GPU (WebGPU)' : 'the CPU (WASM)'
  const d = c.download
  switch (c.phase) {
    case 'idle':
      return c.deviceReason === undefined
        ? 'Not contributing.'
        : `Not contributing. Turned on, this tab would compute on ${where}.`
    case 'checking':
      return 'Checking whether this browser offers WebGPU…'
    case 'joining':
      return `Measuring this tab's speed on ${where} and joining the mesh…`
    case 'waiting':
      return 'Joined the mesh; waiting for the server to give this tab layers to serve.'
    case 'downloading':
      return d === undefined
        ? `Downloading layers ${range(c.assigned)}…`
        : `Downloading layers ${range(c.assigned)}: ${Math.floor((100 * d.done) / Math.max(1, d.total))}% (${bytes(d.done)} of ${bytes(d.total)}${eta(c)}).`
    case 'loading':
      return `Loading layers ${range(c.assigned)} onto ${where}…`
    case 'serving':
      return `Serving layers ${range(c.layers)} on ${where}: the mesh sends this tab hidden states and it sends back its layers' results.`
    case 'reconnecting':
      return `Lost the server (${c.error ?? 'disconnected'}); rejoining the mesh as soon as it answers again…`
    case 'stopping':
      return 'Handing the layers back to the mesh…'
    case 'error':
      return `Stopped: ${c.error ?? 'something went wrong'}.`
  }
}

/** The download of the tab's layers: a bar with bytes, kept at 100% once done. */
export function DownloadBar({ c }: { c: ContributeState }) {
  const d = c.download
  if (d === undefined) return null
  const pct = Math.floor((100 * d.done) / Math.max(1, d.total))
  const took = ((d.updatedAt - d.startedAt) / 1000).toFixed(1)
  return (
    <div className="download">
      <progress
        max={100}
        value={pct}
        aria-label={`download of layers ${range(c.assigned ?? c.layers)}`}
        data-testid="contribute-progress"
      />
      <span className="meta" data-testid="contribute-progress-text">
        {pct}%: {bytes(d.done)} of {bytes(d.total)}
        {d.done >= d.total ? ` in ${took} s` : eta(c)}
      </span>
    </div>
  )
}
