import { generateIdentity, type InferenceBackend } from '@butterfly/core'
import { createNodeBackend, nodeWrtc, startWorkerNode, type WorkerNode } from '@butterfly/node-platform'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { SlowClaimCheck } from '../src/gateway/claim-check.js'
import type { HealthReport } from '../src/http/health-routes.js'
import type { SignalServer } from '../src/http/signal-server.js'
import {
  caps,
  connect,
  disconnected,
  joinPayload,
  joinWorker,
  manualClock,
  request,
  startServer,
  tinyModel,
} from './helpers.js'

vi.setConfig({ testTimeout: 30_000 })

let model: Awaited<ReturnType<typeof tinyModel>>
beforeAll(async () => {
  model = await tinyModel()
})
afterAll(() => model.cleanup())

type Refusal = { ok: false; error: { code: string; message: string }; retryAfterMs?: number }

async function tryJoin(server: SignalServer, token = '') {
  const socket = await connect(server)
  const gone = disconnected(socket)
  const ack = await request<Refusal>(
    socket,
    'join',
    joinPayload(socket, { mesh: 'default', token, capabilities: caps() }),
  )
  return { ack, gone }
}

/** Runs `body` against a server started with `init`, then closes it. */
async function withServer(init: Record<string, unknown>, body: (s: SignalServer) => Promise<void>) {
  const server = await startServer({
    meshes: [{ name: 'default', modelDir: model.dir, meshToken: 'shared' }],
    ...init,
  })
  try {
    await body(server)
  } finally {
    await server.close()
  }
}

describe('join limits', () => {
  test('--require-peer-tokens refuses the shared mesh token; a per-peer token joins', async () => {
    await withServer({ requirePeerTokens: true, adminToken: 'a' }, async (server) => {
      const { ack, gone } = await tryJoin(server, 'shared')
      expect(ack).toMatchObject({ ok: false, error: { code: 'ERR_PEER_TOKEN_REQUIRED' } })
      expect(await gone).toBe('io server disconnect')
      const issued = server.admission.tokens?.issue({ mesh: 'default' })
      const w = await joinWorker(server, { token: issued?.token ?? '' })
      expect(server.meshes.get('default')?.has(w.peerId)).toBe(true)
    })
  })

  test('requirePeerTokens without a token store is a config error', async () => {
    await expect(withServer({ requirePeerTokens: true }, async () => undefined)).rejects.toMatchObject({
      code: 'ERR_SERVER_CONFIG',
    })
  })

  test('over --max-peers-per-address the join is refused; a leaver frees its place', async () => {
    await withServer({ maxPeersPerAddress: 2 }, async (server) => {
      const a = await joinWorker(server, { token: 'shared' })
      await joinWorker(server, { token: 'shared' })
      const { ack } = await tryJoin(server, 'shared')
      expect(ack).toMatchObject({ ok: false, error: { code: 'ERR_PEERS_PER_ADDRESS' } })
      expect(ack.error.message).toMatch(/127\.0\.0\.1 already has 2 live peers/)
      const left = disconnected(a.socket)
      await request(a.socket, 'leave')
      a.socket.disconnect()
      await left
      const w = await joinWorker(server, { token: 'shared' })
      expect(server.meshes.get('default')?.has(w.peerId)).toBe(true)
      const metrics = await (await fetch(`${server.url}/metrics`)).text()
      expect(metrics).toMatch(/butterfly_joins_refused_total\{code="ERR_PEERS_PER_ADDRESS"\} 1/)
    })
  })

  test('over --join-rate joins are refused with ERR_JOIN_RATE and a retry hint, until the bucket refills', async () => {
    const clock = manualClock()
    await withServer({ joinRate: 2, now: clock.now }, async (server) => {
      await joinWorker(server, { token: 'shared' })
      await joinWorker(server, { token: 'shared' })
      const { ack, gone } = await tryJoin(server, 'shared')
      expect(ack).toMatchObject({ ok: false, error: { code: 'ERR_JOIN_RATE' } })
      expect(ack.retryAfterMs).toBe(30_000)
      expect(ack.error.message).toMatch(/retry after 30 s/)
      expect(await gone).toBe('io server disconnect')
      clock.advance(30_000)
      await joinWorker(server, { token: 'shared' })
    })
  })
})

/** node-platform's backend, whose stages after the join benchmark's first fail to load. */
function failingBackend(): InferenceBackend {
  const real = createNodeBackend()
  let calls = 0
  return {
    name: real.name,
    createStage: (init, weights) => {
      calls++
      if (calls > 1)
        return Promise.reject(
          Object.assign(new Error('out of device memory (test)'), { code: 'ERR_TEST_OOM' }),
        )
      return real.createStage(init, weights)
    },
  } as InferenceBackend
}

describe('claims checked', () => {
  test('a worker that fails to load its layers loses its place: excluded as load-failed in /health and /metrics', async () => {
    await withServer({}, async (server) => {
      const mesh = server.meshes.get('default')
      if (mesh === undefined) throw new Error('no mesh')
      const excluded = new Promise<void>((resolve) =>
        mesh.on('plan', (p) => {
          if ((p.excluded?.length ?? 0) > 0) resolve()
        }),
      )
      let worker: WorkerNode | undefined
      try {
        worker = await startWorkerNode(
          {
            serverUrl: server.url,
            mesh: 'default',
            token: 'shared',
            name: 'liar',
            memoryBytes: 2 ** 30,
            backendName: 'cpu',
          },
          { backend: failingBackend(), wrtc: nodeWrtc(), identity: generateIdentity() },
        )
        await excluded
        const health = (await (await fetch(`${server.url}/health`)).json()) as HealthReport
        const peer = health.meshes[0]?.peers.find((p) => p.id === worker?.peerId)
        expect(peer).toMatchObject({ excluded: true, excludedReason: 'load-failed' })
        expect(health.meshes[0]?.plan.stages).toEqual([])
        const metrics = await (await fetch(`${server.url}/metrics`)).text()
        expect(metrics).toMatch(/butterfly_peer_exclusions_total\{mesh="default",reason="load-failed"\} 1/)
      } finally {
        await worker?.stop({ drainMs: 0 })
      }
    })
  })

  test('stage-failed is validated', async () => {
    await withServer({}, async (server) => {
      const w = await joinWorker(server, { token: 'shared' })
      for (const bad of [
        null,
        {},
        { planVersion: -1, error: { code: 'X', message: '' } },
        { planVersion: 1, error: { code: 'lower', message: '' } },
        { planVersion: 1, error: { code: 'X', message: 'm'.repeat(1025) } },
      ]) {
        const ack = await request<Refusal>(w.socket, 'stage-failed', bad)
        expect(ack).toMatchObject({ ok: false, error: { code: 'ERR_CONTROL_INPUT' } })
      }
      const stale = await request(w.socket, 'stage-failed', {
        planVersion: 0,
        error: { code: 'X', message: 'm' },
      })
      expect(stale).toEqual({ ok: true, stale: true })
    })
  })
})

describe('slow-claim check', () => {
  const layers = 4
  // Claims 1000 layer-steps/s: 4 ms a step over 4 layers.
  const claimed = 1000

  test('a peer far slower than it claimed is flagged once, after minSteps', () => {
    const check = new SlowClaimCheck({ factor: 4, minSteps: 8, slackMs: 10 })
    const findings = Array.from({ length: 8 }, () => check.record('slow', claimed, layers, 40))
    expect(findings.slice(0, 7).every((f) => f === undefined)).toBe(true)
    expect(findings[7]).toMatchObject({ peerId: 'slow', claimedMs: 4, medianMs: 40 })
    expect(check.flagged().map((f) => f.peerId)).toEqual(['slow'])
    expect(check.record('slow', claimed, layers, 40)).toBeUndefined()
  })

  test.each([
    ['as fast as claimed', 4],
    ['within the factor and the slack', 4 * 4 + 10],
  ])('a peer %s is not flagged', (_, ms) => {
    const check = new SlowClaimCheck({ factor: 4, minSteps: 8, slackMs: 10 })
    for (let i = 0; i < 100; i++) check.record('ok', claimed, layers, ms)
    expect(check.flagged()).toEqual([])
  })

  test('the median shrugs off a few slow steps (a GC pause, a busy link)', () => {
    const check = new SlowClaimCheck({ factor: 4, minSteps: 9, slackMs: 0 })
    for (let i = 0; i < 9; i++) check.record('p', claimed, layers, i % 3 === 0 ? 500 : 5)
    expect(check.flagged()).toEqual([])
  })

  test('a peer that claims nothing is never judged', () => {
    const check = new SlowClaimCheck({ minSteps: 1 })
    check.record('p', 0, layers, 1e6)
    expect(check.flagged()).toEqual([])
  })

  test.each([[{ factor: 0.5 }], [{ minSteps: 0 }], [{ minSteps: 1.5 }], [{ slackMs: -1 }]])(
    'bad options %o throw',
    (o) => {
      expect(() => new SlowClaimCheck(o)).toThrow(RangeError)
    },
  )
})
