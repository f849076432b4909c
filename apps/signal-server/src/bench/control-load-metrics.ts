import { readFileSync } from 'node:fs'
import type { ServerProcess } from './bench-processes.js'

// What the control-load bench reads: the servers' /metrics and resident sets, and exact
// quantiles of what it timed itself.

const MESH = 'default'

export interface Quantiles {
  readonly p50: number
  readonly p95: number
  readonly max: number
}

export function exact(values: readonly number[]): Quantiles {
  if (values.length === 0) return { p50: Number.NaN, p95: Number.NaN, max: Number.NaN }
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
  return { p50: at(0.5), p95: at(0.95), max: sorted.at(-1) as number }
}

/** The server's resident set, sampled twice a second from /proc (Linux), in MiB. */
export class RssSampler {
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

  /** Several servers' scrapes as one: counters and histogram buckets add up (gauges would too). */
  static merge(all: readonly MetricsScrape[]): MetricsScrape {
    const samples = new Map<string, number>()
    for (const one of all) for (const [k, v] of one.samples) samples.set(k, (samples.get(k) ?? 0) + v)
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

export async function scrape(url: string): Promise<MetricsScrape> {
  const res = await fetch(`${url}/metrics`)
  return MetricsScrape.parse(await res.text())
}
