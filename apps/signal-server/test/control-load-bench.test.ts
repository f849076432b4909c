import { describe, expect, test, vi } from 'vitest'
import { controlLoadBench, MetricsScrape } from '../src/bench/control-load-bench.js'
import { startBenchRedis } from '../src/bench/control-load-redis.js'

// The load bench's harness, small: its figures are for `npm run bench`; this checks only that
// every peer joined, every signal arrived and the server's plan histogram was read, with one
// server and with two on one Redis.
vi.setConfig({ testTimeout: 90_000 })

/** 20 peers, churn 5 + 5/s for 2 s, 20 signals/s over 2 pairs. */
const SMALL = {
  peers: 20,
  rampPerSec: 50,
  churnPerSec: 5,
  churnSeconds: 2,
  signalPairs: 2,
  signalsPerSec: 20,
}

describe('control load bench', () => {
  test('20 real peers join, churn and relay every signal through a real server process', async () => {
    const r = await controlLoadBench(SMALL)
    expect(r.joined).toBe(20)
    expect(r.refused).toBe(0)
    expect(r.lost).toBe(0)
    expect(r.signalsSent).toBe(40)
    expect(r.signalsReceived).toBe(r.signalsSent)
    expect(r.relayMs.p95).toBeGreaterThanOrEqual(r.relayMs.p50)
    // Ten joins and ten leaves of workers: one plan each.
    expect(r.plans).toBe(20)
    expect(Number.isFinite(r.planMs.p95)).toBe(true)
    expect(r.rssMiB.peak).toBeGreaterThan(0)
    expect(r.servers).toBe(1)
    expect(r.relayCrossMs.p50).toBeNaN()
  })

  test("two servers on the bench's own Redis share the 20 peers and relay signals across them", async () => {
    const redis = await startBenchRedis()
    if ('skipped' in redis) throw new Error(redis.skipped)
    try {
      const r = await controlLoadBench({
        ...SMALL,
        redisUrl: redis.url,
        servers: 2,
      })
      expect(r.servers).toBe(2)
      expect(r.joined).toBe(20)
      expect(r.refused).toBe(0)
      expect(r.lost).toBe(0)
      expect(r.signalsSent).toBe(40)
      expect(r.signalsReceived).toBe(r.signalsSent)
      // Pair 0 spans the servers, pair 1 sits on one: both kinds were timed.
      for (const q of [r.relayCrossMs, r.relayWithinMs]) {
        expect(q.p50).toBeGreaterThan(0)
        expect(q.p95).toBeGreaterThanOrEqual(q.p50)
        expect(q.max).toBeGreaterThanOrEqual(q.p95)
      }
      // Only the lease holder plans; the churn moved the mesh, so it did.
      expect(r.plans).toBeGreaterThan(0)
      expect(Number.isFinite(r.planMs.p95)).toBe(true)
      expect(r.planMessagesPerSec).toBeGreaterThan(0)
      expect(r.plansReceived).toBeGreaterThan(0)
      expect(r.convergeSeconds).toBeGreaterThanOrEqual(0)
      expect(r.rssMiB.peak).toBeGreaterThan(0)
    } finally {
      await redis.stop()
    }
  })
})

describe('MetricsScrape.quantiles', () => {
  const text = (counts: readonly number[]) =>
    [
      '# TYPE butterfly_plan_seconds histogram',
      ...['0.001', '0.01', '0.1', '+Inf'].map(
        (le, i) => `butterfly_plan_seconds_bucket{le="${le}",mesh="default"} ${counts[i]}`,
      ),
      `butterfly_plan_seconds_count{mesh="default"} ${counts[3]}`,
    ].join('\n')

  test('gives the upper bound of the bucket each quantile falls in, in ms', () => {
    const q = MetricsScrape.parse(text([50, 96, 100, 100])).quantiles('butterfly_plan_seconds')
    expect(q).toEqual({ p50: 1, p95: 10, max: 100 })
  })

  test('counts only observations since an earlier scrape, and Infinity past the last bucket', () => {
    const before = MetricsScrape.parse(text([50, 50, 50, 50]))
    const q = MetricsScrape.parse(text([50, 50, 60, 70])).quantiles('butterfly_plan_seconds', before)
    expect(q).toEqual({ p50: 100, p95: Number.POSITIVE_INFINITY, max: Number.POSITIVE_INFINITY })
  })

  test('is NaN without observations', () => {
    const q = MetricsScrape.parse(text([0, 0, 0, 0])).quantiles('butterfly_plan_seconds')
    expect(q.p50).toBeNaN()
  })
})
