import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { ServerMetrics } from '../src/control/server-metrics.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { closeClients, joinWorker, startServer, tinyModel } from './helpers.js'

vi.setConfig({ testTimeout: 15_000 })

/** The value of one sample line (`name{labels} value`) in Prometheus text, or undefined. */
function sample(text: string, line: string): number | undefined {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `))
  return found === undefined ? undefined : Number(found.slice(line.length + 1))
}

describe('ServerMetrics.replanned', () => {
  test('observes plan and broadcast time and counts the plan messages sent', async () => {
    const metrics = new ServerMetrics()
    metrics.replanned('m', { planSeconds: 0.003, broadcastSeconds: 0.0002, members: 7 })
    metrics.replanned('m', { planSeconds: 0.2, broadcastSeconds: 0.0002, members: 8 })
    // Unchanged, so sent to nobody: a plan computed, no broadcast.
    metrics.replanned('m', { planSeconds: 0.001, broadcastSeconds: 0, members: 0 })
    const text = await metrics.text()
    expect(sample(text, 'butterfly_plan_seconds_count{mesh="m"}')).toBe(3)
    expect(sample(text, 'butterfly_plan_seconds_sum{mesh="m"}')).toBeCloseTo(0.204, 9)
    // The 1 ms and 3 ms plans land by 5 ms, the 200 ms one only from 250 ms up.
    expect(sample(text, 'butterfly_plan_seconds_bucket{le="0.005",mesh="m"}')).toBe(2)
    expect(sample(text, 'butterfly_plan_seconds_bucket{le="0.1",mesh="m"}')).toBe(2)
    expect(sample(text, 'butterfly_plan_seconds_bucket{le="0.25",mesh="m"}')).toBe(3)
    expect(sample(text, 'butterfly_plan_broadcast_seconds_count{mesh="m"}')).toBe(2)
    expect(sample(text, 'butterfly_plan_messages_total{mesh="m"}')).toBe(15)
    expect(sample(text, 'butterfly_replans_total{mesh="m"}')).toBe(3)
  })
})

describe('/metrics of a server', () => {
  let model: Awaited<ReturnType<typeof tinyModel>>
  let server: SignalServer
  beforeAll(async () => {
    model = await tinyModel()
    // Uniform: every worker takes layers, so each join changes the plan and broadcasts it.
    server = await startServer({
      meshes: [{ name: 'default', modelDir: model.dir }],
      planOptions: { strategy: 'uniform' },
    })
  })
  afterAll(async () => {
    await closeClients(server)
    await server.close()
    await model.cleanup()
  })

  test('every join is one plan observation, sent to every member the mesh then had', async () => {
    await joinWorker(server)
    await joinWorker(server)
    const text = await (await fetch(`${server.url}/metrics`)).text()
    expect(sample(text, 'butterfly_plan_seconds_count{mesh="default"}')).toBe(2)
    expect(sample(text, 'butterfly_plan_broadcast_seconds_count{mesh="default"}')).toBe(2)
    // One member for the first plan, two for the second (the gateway joins only with a request).
    expect(sample(text, 'butterfly_plan_messages_total{mesh="default"}')).toBe(3)
  })
})
