import { randomBytes } from 'node:crypto'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { type ServerProcess, startServerProcess } from './bench-processes.js'
import { exact, MetricsScrape, type Quantiles, RssSampler, scrape } from './control-load-metrics.js'
import { ControlLoadPeers } from './control-load-peers.js'

export { MetricsScrape, type Quantiles } from './control-load-metrics.js'

// The control plane under a thousand peers: one real butterfly-server process (or two on one
// Redis), the peers in this one (socket.io clients, split alternately between the servers), ramped
// up, then churned while every peer heartbeats and pairs of them time signals through the relay.

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
  /** With it, `servers` (default 2) server processes share the mesh through this Redis. */
  readonly redisUrl?: string
  readonly servers?: number
}

export interface ControlLoadResult {
  readonly options: ControlLoadOptions
  /** butterfly-server processes sharing the mesh (1, or more on one Redis). */
  readonly servers: number
  readonly joined: number
  readonly refused: number
  readonly lost: number
  /** Plans computed during the churn, by all servers; quantiles are upper bounds of histogram buckets, in ms. */
  readonly plans: number
  readonly planMs: Quantiles
  readonly planMeanMs: number
  readonly broadcastMs: Quantiles
  /** Plan messages all servers sent during the churn, per second. */
  readonly planMessagesPerSec: number
  readonly plansReceived: number
  readonly signalsSent: number
  readonly signalsReceived: number
  /** Relay latency, send to receipt, in ms (exact, from every signal). */
  readonly relayMs: Quantiles
  /** The same, of signals between peers on one server, and on two (NaN with one server). */
  readonly relayWithinMs: Quantiles
  readonly relayCrossMs: Quantiles
  /** The largest server's resident set (each server holds the whole mesh's replica). */
  readonly rssMiB: { readonly start: number; readonly peak: number; readonly end: number }
  /** This process's event-loop delay in ms: when high, the client side limited the figures. */
  readonly benchLoopMs: Quantiles
  readonly rampSeconds: number
  /** How long, after the ramp, until every server counted every peer (the cluster's sync). */
  readonly convergeSeconds: number
}

/** Runs the load once; throws only when a server cannot start. */
export async function controlLoadBench(opts: ControlLoadOptions): Promise<ControlLoadResult> {
  const count = opts.redisUrl === undefined ? 1 : Math.max(1, opts.servers ?? 2)
  const args = [
    ...['--host', '127.0.0.1', '--port', '0', '--model', opts.model ?? EMBEDDED_MODEL],
    // The defaults are sized against one abusive address; here every peer comes from 127.0.0.1.
    ...['--max-peers-per-address', String(4 * opts.peers + 100), '--join-rate', '1000000'],
    // Sealed, as docs/deploy.md recommends: the HMACs are part of what a cluster costs.
    ...(opts.redisUrl === undefined
      ? []
      : ['--redis', opts.redisUrl, '--cluster-secret', randomBytes(24).toString('base64url')]),
    ...(opts.serverArgs ?? []),
  ]
  const servers: ServerProcess[] = []
  const rss: RssSampler[] = []
  const loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS })
  let peers: ControlLoadPeers | undefined
  try {
    // One after another: the first takes the planning lease before the second asks for it.
    for (let i = 0; i < count; i++) servers.push(await startServerProcess(args))
    for (const server of servers) rss.push(new RssSampler(server))
    const urls = servers.map((s) => s.url)
    peers = new ControlLoadPeers(urls, MESH)
    const rssStart = Math.max(...rss.map((r) => r.sample()))
    loop.enable()
    const rampStart = performance.now()
    const churning = Math.max(0, opts.peers - 2 * opts.signalPairs)
    const p = peers
    await paced(opts.rampPerSec, churning, () => void p.join())
    await peers.settled()
    await peers.joinPairs(opts.signalPairs)
    const rampSeconds = (performance.now() - rampStart) / 1000
    const joined = peers.size
    // A signal to a peer its sender's server has not heard of yet is dropped: wait for the sync.
    const converged = performance.now()
    await everyServerCounts(urls, joined, 30_000)
    const convergeSeconds = (performance.now() - converged) / 1000
    const before = MetricsScrape.merge(await Promise.all(urls.map(scrape)))
    const churnStart = performance.now()
    const signals = paced(opts.signalsPerSec, Math.round(opts.signalsPerSec * opts.churnSeconds), () =>
      p.sendSignal(),
    )
    await paced(opts.churnPerSec, Math.round(opts.churnPerSec * opts.churnSeconds), () => {
      void p.join()
      p.leaveOne()
    })
    await signals
    await peers.settled()
    await peers.allSignalsIn(10_000)
    const churnSeconds = (performance.now() - churnStart) / 1000
    // The planner may sit on the other server: its last plans reach it a sync later.
    if (count > 1) await everyServerCounts(urls, peers.size, 30_000)
    const after = MetricsScrape.merge(await Promise.all(urls.map(scrape)))
    loop.disable()
    const rssEnd = Math.max(...rss.map((r) => r.sample()))
    const plans = after.count('butterfly_plan_seconds') - before.count('butterfly_plan_seconds')
    const planSum = after.sum('butterfly_plan_seconds') - before.sum('butterfly_plan_seconds')
    const messages =
      after.value(`butterfly_plan_messages_total{mesh="${MESH}"}`) -
      before.value(`butterfly_plan_messages_total{mesh="${MESH}"}`)
    return {
      options: opts,
      servers: count,
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
      relayMs: exact([...peers.withinMs, ...peers.crossMs]),
      relayWithinMs: exact(peers.withinMs),
      relayCrossMs: exact(peers.crossMs),
      rssMiB: { start: rssStart, peak: Math.max(...rss.map((r) => r.peak)), end: rssEnd },
      // The histogram holds whole timer intervals; the lag is what exceeds the resolution.
      benchLoopMs: {
        p50: lagMs(loop.percentile(50)),
        p95: lagMs(loop.percentile(95)),
        max: lagMs(loop.max),
      },
      rampSeconds,
      convergeSeconds,
    }
  } finally {
    for (const r of rss) r.stop()
    await peers?.close().catch(() => undefined)
    await Promise.all(servers.map((s) => s.close()))
  }
}

/** Waits until every server's butterfly_peers gauge (its whole replica) reads `peers`. */
async function everyServerCounts(urls: readonly string[], peers: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const counts = (await Promise.all(urls.map(scrape))).map((m) =>
      m.value(`butterfly_peers{mesh="${MESH}"}`),
    )
    if (counts.every((n) => n === peers)) return
    if (performance.now() > deadline) {
      throw new Error(`servers count ${counts.join(', ')} peers, not ${peers}, after ${timeoutMs} ms`)
    }
    await sleep(100)
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
