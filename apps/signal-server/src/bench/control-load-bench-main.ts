import {
  type ControlLoadOptions,
  type ControlLoadResult,
  controlLoadBench,
  type Quantiles,
} from './control-load-bench.js'
import { describeMachine } from './mesh-bench.js'

/**
 * The control-plane load bench (`npm run bench`, or alone: node
 * apps/signal-server/dist/bench/control-load-bench-main.js). Sized by environment:
 * BUTTERFLY_LOAD_PEERS (1000), BUTTERFLY_LOAD_RAMP (joins/s while ramping, 50),
 * BUTTERFLY_LOAD_RATE (joins and leaves/s while churning, 10 each), BUTTERFLY_LOAD_SECONDS (60),
 * BUTTERFLY_LOAD_MODEL (the server's --model); BUTTERFLY_BENCH_QUICK=1 runs 200 peers for 15 s.
 * Exits 1 when a join was refused, a peer lost or a signal missing.
 */
function envNumber(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, not "${raw}"`)
  return n
}

function options(): ControlLoadOptions {
  const quick = process.env.BUTTERFLY_BENCH_QUICK === '1'
  const model = process.env.BUTTERFLY_LOAD_MODEL
  return {
    peers: Math.round(envNumber('BUTTERFLY_LOAD_PEERS', quick ? 200 : 1000)),
    rampPerSec: envNumber('BUTTERFLY_LOAD_RAMP', 50),
    churnPerSec: envNumber('BUTTERFLY_LOAD_RATE', 10),
    churnSeconds: envNumber('BUTTERFLY_LOAD_SECONDS', quick ? 15 : 60),
    signalPairs: 10,
    signalsPerSec: 50,
    ...(model === undefined || model === '' ? {} : { model }),
  }
}

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(v < 1 ? 2 : 1) : String(v))
const q = (x: Quantiles) => `${ms(x.p50)} / ${ms(x.p95)} / ${ms(x.max)}`

export function loadTable(r: ControlLoadResult): string[] {
  const o = r.options
  return [
    'figure\tvalue',
    `peers joined (ramp ${o.rampPerSec}/s took ${r.rampSeconds.toFixed(1)} s)\t${r.joined}`,
    `joins refused / peers lost (goal 0)\t${r.refused} / ${r.lost}`,
    `plans computed during the churn\t${r.plans}`,
    `plan computation ms p50 / p95 / max (bucket bounds; goal < 50)\t${q(r.planMs)} (mean ${ms(r.planMeanMs)})`,
    `plan broadcast ms p50 / p95 / max (bucket bounds)\t${q(r.broadcastMs)}`,
    `plan messages sent per second\t${r.planMessagesPerSec.toFixed(0)}`,
    `signal relay ms p50 / p95 / max\t${q(r.relayMs)}`,
    `signals received / sent\t${r.signalsReceived} / ${r.signalsSent}`,
    `server RSS MiB start / peak / end\t${ms(r.rssMiB.start)} / ${ms(r.rssMiB.peak)} / ${ms(r.rssMiB.end)}`,
    `bench event-loop delay ms p50 / p95 / max\t${q(r.benchLoopMs)}`,
  ]
}

async function main(): Promise<void> {
  const opts = options()
  console.log(
    `\n## Control plane under load: ${describeMachine()}; ${opts.peers} peers, churn ${opts.churnPerSec} joins + ${opts.churnPerSec} leaves/s for ${opts.churnSeconds} s, ${opts.signalsPerSec} signals/s over ${opts.signalPairs} pairs, one server`,
  )
  const r = await controlLoadBench(opts)
  for (const line of loadTable(r)) console.log(line)
  if (r.refused > 0 || r.lost > 0 || r.signalsReceived < r.signalsSent) {
    console.error('control load bench: a join was refused, a peer lost or a signal missing')
    process.exitCode = 1
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
