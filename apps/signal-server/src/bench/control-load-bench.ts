import { readFileSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { type ServerProcess, startServerProcess } from './bench-processes.js'
import { ControlLoadPeers } from './control-load-peers.js'

// The control plane under a thousand peers: one real butterfly-server process, the peers in
// this one (socket.io clients), ramped up, then churned while every peer heartbeats and pairs
// of them time signals through the relay.

const EMBEDDED_MODEL = fileURLToPath(new URL('../../../../models/shakespeare', import.meta.url))
const MESH = 'default'
const LOOP_RESOLUTION_MS = 10
const lagMs = (ns: number) => Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS)

export interface ControlLoadOptions {
  /** Peers joined before the churn starts (the pairs included). */
  readonly peers: number
  /** Joins started per second while ramping up. */
  readonly rampPerSec: number
  /** Joins and, as many, leaves per second while churning. */
  readonly churnPerSec: number
  readonly churnSeconds: number
  /** Pairs of peers that exchange signals; they never leave. */
  readonly signalPairs: number
  /** Signals sent per second, round-robin over the pairs. */
  readonly signalsPerSec: number
  /** The server's --model; default the embedded one. */
  readonly model?: string
  /** More server flags (e.g. --heartbeat-ms). */
  readonly serverArgs?: readonly string[]
}

export interface Quantiles {
  readonly p50: number
  readonly p95: number
  readonly max: number
}

export interface ControlLoadResult {
  readonly options: ControlLoadOptions
  readonly joined: number
  readonly refused: number
  readonly lost: number
  /** Plans computed during the churn; quantiles are upper bounds of histogram buckets, in ms. */
  readonly plans: number
  readonly planMs: Quantiles
  readonly planMeanMs: number
  readonly broadcastMs: Quantiles
  /** Plan messages the server sent during the churn, per second. */
  readonly planMessagesPerSec: number
  readonly plansReceived: number
  readonly signalsSent: number
  readonly signalsReceived: number
  /** Relay latency, send to receipt, in ms (exact, from every signal). */
  readonly relayMs: Quantiles
  readonly rssMiB: { readonly start: number; readonly peak: number; readonly end: number }
  /** This process's event-loop delay in ms: when high, the client side limited the figures. */
  readonly benchLoopMs: Quantiles
  readonly rampSeconds: number
}

/** Runs the load once; throws only when the server cannot start. */
export async function controlLoadBench(opts: ControlLoadOptions): Promise<ControlLoadResult> {
  const server = await startServerProcess([
    ...['--host', '127.0.0.1', '--port', '0', '--model', opts.model ?? EMBEDDED_MODEL],
    // The defaults are sized against one abusive address; here every peer comes from 127.0.0.1.
    ...['--max-peers-per-address', String(4 * opts.peers + 100), '--join-rate', '1000000'],
    ...(opts.serverArgs ?? []),
  ])
  const rss = new RssSampler(server)
  const loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS })
  const peers = new ControlLoadPeers(server.url, MESH)
  try {
    const rssStart = rss.sample()
    loop.enable()
    const rampStart = performance.now()
    const churning = Math.max(0, opts.peers - 2 * opts.signalPairs)
    await paced(opts.rampPerSec, churning, () => void peers.join())
    await peers.settled()
    await peers.joinPairs(opts.signalPairs)
    const rampSeconds = (performance.now() - rampStart) / 1000
    const joined = peers.size
    const before = await scrape(server.url)
    const churnStart = performance.now()
    const signals = paced(opts.signalsPerSec, Math.round(opts.signalsPerSec * opts.churnSeconds), () =>
      peers.sendSignal(),
    )
    await paced(opts.churnPerSec, Math.round(opts.churnPerSec * opts.churnSeconds), () => {
      void peers.join()
      peers.leaveOne()
    })
    await signals
    await peers.settled()
    await peers.allSignalsIn(10_000)
    const churnSeconds = (performance.now() - churnStart) / 1000
    const after = await scrape(server.url)
    loop.disable()
    const rssEnd = rss.sample()
    const plans = after.count('butterfly_plan_seconds') - before.count('butterfly_plan_seconds')
    const planSum = after.sum('butterfly_plan_seconds') - before.sum('butterfly_plan_seconds')
    const messages =
      after.value(`butterfly_plan_messages_total{mesh="${MESH}"}`) -
      before.value(`butterfly_plan_messages_total{mesh="${MESH}"}`)
    return {
      options: opts,
      joined,
      refused: peers.refused,
      lost: peers.lost,
      plans,
      planMs: after.quantiles('butterfly_plan_seconds', before),
      planMeanMs: plans === 0 ? 0 : (1000 * planSum) / plans,
      broadcastMs: after.quantiles('butterfly_plan_broadcast_seconds', before),
      planMessagesPerSec: messages / churnSeconds,
      plansReceived: peers.plansReceived,
      signalsSent: peers.signalsSent,
      signalsReceived: peers.signalsReceived,
      relayMs: exact(peers.latenciesMs),
      rssMiB: { start: rssStart, peak: rss.peak, end: rssEnd },
      // The histogram holds whole timer intervals; the lag is what exceeds the resolution.
      benchLoopMs: {
        p50: lagMs(loop.percentile(50)),
        p95: lagMs(loop.percentile(95)),
        max: lagMs(loop.max),
      },
      rampSeconds,
    }
  } finally {
    rss.stop()
    await peers.close().catch(() => undefined)
    await server.close()
  }
}

/** Calls `fn` `count` times at `perSec`, on an absolute schedule so slow calls do not drift it. */
async function paced(perSec: number, count: number, fn: () => void): Promise<void> {
  const start = performance.now()
  for (let i = 0; i < count; i++) {
    const wait = start + (1000 * i) / perSec - performance.now()
    if (wait > 0) await sleep(wait)
    fn()
  }
}

function exact(values: readonly number[]): Quantiles {
  if (values.length === 0) return { p50: Number.NaN, p95: Number.NaN, max: Number.NaN }
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
  return { p50: at(0.5), p95: at(0.95), max: sorted.at(-1) as number }
}

/** The server's resident set, sampled twice a second from /proc (Linux), in MiB. */
class RssSampler {
  peak = 0
  private readonly timer: ReturnType<typeof setInterval>

  constructor(private readonly server: ServerProcess) {
    this.timer = setInterval(() => this.sample(), 500)
  }

  sample(): number {
    let mib = Number.NaN
    try {
      const status = readFileSync(`/proc/${this.server.child.pid}/status`, 'utf8')
      const kb = status.match(/^VmRSS:\s+(\d+) kB/m)?.[1]
      if (kb !== undefined) mib = Number(kb) / 1024
    } catch {
      // Not Linux, or the process is gone: the figure stays NaN.
    }
    if (mib > this.peak) this.peak = mib
    return mib
  }

  stop(): void {
    clearInterval(this.timer)
  }
}

/** One scrape of /metrics: sample lines by their name and labels. */
export class MetricsScrape {
  constructor(private readonly samples: ReadonlyMap<string, number>) {}

  static parse(text: string): MetricsScrape {
    const samples = new Map<string, number>()
    for (const line of text.split('\n')) {
      if (line.startsWith('#') || line.trim() === '') continue
      const cut = line.lastIndexOf(' ')
      samples.set(line.slice(0, cut), Number(line.slice(cut + 1)))
    }
    return new MetricsScrape(samples)
  }

  value(key: string): number {
    return this.samples.get(key) ?? 0
  }

  count(histogram: string): number {
    return this.value(`${histogram}_count{mesh="${MESH}"}`)
  }

  sum(histogram: string): number {
    return this.value(`${histogram}_sum{mesh="${MESH}"}`)
  }

  /**
   * p50, p95 and max of the observations since `since`, in ms, each as the upper bound of the
   * bucket it falls in (a histogram keeps no more); Infinity above the last bucket.
   */
  quantiles(histogram: string, since?: MetricsScrape): Quantiles {
    const buckets: [number, number][] = []
    for (const [key, v] of this.samples) {
      const m = key.match(new RegExp(`^${histogram}_bucket\\{le="([^"]+)",mesh="${MESH}"\\}$`))
      if (m?.[1] === undefined) continue
      const le = m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1])
      buckets.push([le, v - (since?.samples.get(key) ?? 0)])
    }
    buckets.sort((a, b) => a[0] - b[0])
    const total = buckets.at(-1)?.[1] ?? 0
    const bound = (q: number) => {
      if (total === 0) return Number.NaN
      const hit = buckets.find(([, n]) => n >= q * total)
      return 1000 * (hit?.[0] ?? Number.POSITIVE_INFINITY)
    }
    return { p50: bound(0.5), p95: bound(0.95), max: bound(1) }
  }
}

async function scrape(url: string): Promise<MetricsScrape> {
  const res = await fetch(`${url}/metrics`)
  return MetricsScrape.parse(await res.text())
}
