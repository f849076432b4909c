import { THROUGHPUT_POINTS, type ThroughputSample } from '../store/mesh-store.js'

const W = 600
const H = 120
const PAD = 28

/**
 * Tokens per second the mesh generated, one bar per refresh (2 s), newest on the right. The
 * scale is the window's peak, so a quiet mesh still shows its shape.
 */
export function ThroughputChart({ name, samples }: { name: string; samples: readonly ThroughputSample[] }) {
  const latest = samples.at(-1)?.tokensPerSec ?? 0
  const peak = Math.max(0, ...samples.map((s) => s.tokensPerSec))
  const scale = peak > 0 ? peak : 1
  const slot = (W - PAD) / THROUGHPUT_POINTS
  const offset = THROUGHPUT_POINTS - samples.length
  const summary =
    samples.length === 0
      ? 'no samples yet'
      : `now ${latest.toFixed(1)} tokens/s, peak ${peak.toFixed(1)} over the last ${samples.length * 2} s`
  return (
    <figure className="throughput">
      <svg
        viewBox={`0 0 ${W} ${H}`}
        role="img"
        aria-label={`throughput of mesh ${name}: ${summary}`}
        data-testid={`throughput-${name}`}
      >
        <line x1={PAD} y1={H - 16} x2={W} y2={H - 16} className="axis" />
        <text x={PAD - 4} y={14} textAnchor="end" className="sub">
          {peak.toFixed(0)}
        </text>
        <text x={PAD - 4} y={H - 16} textAnchor="end" className="sub">
          0
        </text>
        {samples.map((s, i) => {
          const h = ((H - 32) * s.tokensPerSec) / scale
          return (
            <rect
              key={s.at}
              x={PAD + (offset + i) * slot + 1}
              y={H - 16 - h}
              width={Math.max(1, slot - 2)}
              height={h}
              className="bar"
            />
          )
        })}
        <text x={W} y={H - 2} textAnchor="end" className="sub">
          now
        </text>
        <text x={PAD} y={H - 2} className="sub">
          −2 min
        </text>
      </svg>
      <figcaption>
        Throughput: <output data-testid={`throughput-now-${name}`}>{latest.toFixed(1)}</output> tokens/s
        {samples.length > 0 && <span className="meta"> (peak {peak.toFixed(1)})</span>}
      </figcaption>
    </figure>
  )
}
