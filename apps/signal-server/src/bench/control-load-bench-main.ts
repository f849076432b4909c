import {
  type ControlLoadOptions,
  type ControlLoadResult,
  controlLoadBench,
  type Quantiles,
} from './control-load-bench.js'
import { startBenchRedis } from './control-load-redis.js'
import { describeMachine } from './mesh-bench.js'

/**
 * The control-plane load bench (`npm run bench`, or alone: node
 * apps/signal-server/dist/bench/control-load-bench-main.js). Sized by environment:
 * BUTTERFLY_LOAD_PEERS (1000), BUTTERFLY_LOAD_RAMP (joins/s while ramping, 50),
 * BUTTERFLY_LOAD_RATE (joins and leaves/s while churning, 10 each), BUTTERFLY_LOAD_SECONDS (60),
 * BUTTERFLY_LOAD_MODEL (the server's --model); BUTTERFLY_BENCH_QUICK=1 runs 200 peers for 15 s.
 * After the one-server run, the same load against two servers sharing the mesh through a
 * redis-server it starts (BUTTERFLY_REDIS_SERVER, default /usr/bin/redis-server; skipped, with a
 * line saying so, when there is none), peers split alternately between them.
 * Exits 1 when a join was refused, a peer lost or a signal missing, in either run.
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

/** One row per figure, one column per run (e.g. one server, then two on one Redis). */
export function loadTable(runs: readonly ControlLoadResult[]): string[] {
  const row = (figure: string, cell: (r: ControlLoadResult) => string) =>
    [figure, ...runs.map(cell)].join('\t')
  const rss = (r: ControlLoadResult) => `${ms(r.rssMiB.start)} / ${ms(r.rssMiB.peak)} / ${ms(r.rssMiB.end)}`
  const o = runs[0]?.options
  return [
    ['figure', ...runs.map((r) => (r.servers === 1 ? 'one server' : `${r.servers} servers, one Redis`))].join(
      '\t',
    ),
    row(
      `peers joined (ramp ${o?.rampPerSec}/s took … s)`,
      (r) => `${r.joined} (${r.rampSeconds.toFixed(1)} s)`,
    ),
    row('every server counts every peer after … s', (r) => r.convergeSeconds.toFixed(1)),
    row('joins refused / peers lost (goal 0)', (r) => `${r.refused} / ${r.lost}`),
    row('plans computed during the churn (all servers)', (r) => String(r.plans)),
    row(
      'plan computation ms p50 / p95 / max (bucket bounds; goal < 50)',
      (r) => `${q(r.planMs)} (mean ${ms(r.planMeanMs)})`,
    ),
    row('plan broadcast ms p50 / p95 / max (bucket bounds)', (r) =>
      Number.isNaN(r.broadcastMs.p50) ? 'none (no plan changed)' : q(r.broadcastMs),
    ),
    row('plan messages sent per second (all servers)', (r) => r.planMessagesPerSec.toFixed(0)),
    row('signal relay ms p50 / p95 / max', (r) => q(r.relayMs)),
    row('  within one server', (r) => q(r.relayWithinMs)),
    row('  across servers', (r) => (r.servers === 1 ? '-' : q(r.relayCrossMs))),
    row('signals received / sent', (r) => `${r.signalsReceived} / ${r.signalsSent}`),
    row('server RSS MiB start / peak / end (largest server)', rss),
    row('bench event-loop delay ms p50 / p95 / max', (r) => q(r.benchLoopMs)),
  ]
}

async function main(): Promise<void> {
  const opts = options()
  console.log(
    `\n## Control plane under load: ${describeMachine()}; ${opts.peers} peers, churn ${opts.churnPerSec} joins + ${opts.churnPerSec} leaves/s for ${opts.churnSeconds} s, ${opts.signalsPerSec} signals/s over ${opts.signalPairs} pairs, one server and two on one Redis`,
  )
  const runs = [await controlLoadBench(opts)]
  const redis = await startBenchRedis()
  if ('skipped' in redis) {
    console.log(`(two servers on one Redis skipped: ${redis.skipped}; set BUTTERFLY_REDIS_SERVER)`)
  } else {
    try {
      runs.push(await controlLoadBench({ ...opts, redisUrl: redis.url, servers: 2 }))
    } finally {
      await redis.stop()
    }
  }
  for (const line of loadTable(runs)) console.log(line)
  if (runs.some((r) => r.refused > 0 || r.lost > 0 || r.signalsReceived < r.signalsSent)) {
    console.error('control load bench: a join was refused, a peer lost or a signal missing')
    process.exitCode = 1
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
