import { once } from 'node:events'
import {
  generateIdentity,
  type PeerCapabilities,
  type PlanMessage,
  peerIdFromPublicKey,
  type SignalData,
  toBase64url,
} from '@butterfly/core'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest'
import type { Mesh } from '../src/control/mesh.js'
import { LOCAL_ONLY } from '../src/control/mesh-member.js'
import type { HealthReport } from '../src/http/health-routes.js'
import type { SignalServer } from '../src/http/signal-server.js'
import {
  caps,
  closeClients,
  disconnected,
  GIB,
  joinWorker,
  manualClock,
  next,
  request,
  startServer,
  tinyModel,
  type Worker,
} from './helpers.js'

// Waits are event-driven: a broken server shows up as a fast timeout, not a two-minute one.
vi.setConfig({ testTimeout: 15_000 })

let model: Awaited<ReturnType<typeof tinyModel>>
let server: SignalServer
let mesh: Mesh
let clock: ReturnType<typeof manualClock>

beforeAll(async () => {
  model = await tinyModel()
})
beforeEach(async () => {
  clock = manualClock()
  server = await startServer({
    meshes: [{ name: 'default', modelDir: model.dir }],
    heartbeatMs: 5000,
    heartbeatTimeoutMs: 15_000,
    now: clock.now,
    planOptions: { strategy: 'uniform' },
  })
  mesh = server.meshes.get('default') as Mesh
})
afterEach(async () => {
  await closeClients(server)
  await server.close()
})
afterAll(() => model.cleanup())

/** Resolves with the first plan `w` receives whose version is at least `version`. */
function planAtLeast(w: Worker, version: number): Promise<PlanMessage> {
  const seen = w.plans.find((p) => p.version >= version)
  return seen ? Promise.resolve(seen) : next<PlanMessage>(w.socket, 'plan', (p) => p.version >= version)
}

function expectCovers(plan: PlanMessage, peers: readonly string[]): void {
  expect(plan.stages.length).toBeGreaterThan(0)
  expect(plan.stages[0]?.start).toBe(0)
  expect(plan.stages.at(-1)?.end).toBe(4) // synthetic:tiny has 4 layers
  plan.stages.forEach((s, i) => {
    expect(s.end).toBeGreaterThan(s.start)
    if (i > 0) expect(s.start).toBe(plan.stages[i - 1]?.end)
  })
  expect(new Set(plan.stages.map((s) => s.peerId))).toEqual(new Set(peers))
}

describe('plans', () => {
  test('are pushed on join and re-planned on leave, with growing versions', async () => {
    const a = await joinWorker(server, { name: 'alpha' })
    const first = a.plans.at(-1) as PlanMessage
    expect(first).toMatchObject({ mesh: 'default', modelPath: '/models/default/', modelId: mesh.modelId })
    expectCovers(first, [a.peerId])

    const b = await joinWorker(server, { name: 'beta' })
    const both = await planAtLeast(a, first.version + 1)
    expect(b.plans.at(-1)).toEqual(both)
    expectCovers(both, [a.peerId, b.peerId])

    const replanned = planAtLeast(a, both.version + 1)
    await request(b.socket, 'leave')
    const after = await replanned
    expectCovers(after, [a.peerId])
    expect(mesh.plan).toEqual(after)
    expect(b.plans.at(-1)?.version).toBe(both.version) // a peer that left gets no more plans
  })

  test('a disconnect re-plans like a leave', async () => {
    const a = await joinWorker(server)
    const b = await joinWorker(server)
    const version = mesh.plan.version
    const left = once(mesh, 'peer-left')
    b.socket.disconnect()
    expect(await left).toEqual([b.peerId, 'disconnect'])
    const plan = await planAtLeast(a, version + 1)
    expectCovers(plan, [a.peerId])
  })

  test('a silent worker is dropped after the heartbeat timeout; a heartbeating one stays', async () => {
    const alive = await joinWorker(server, { name: 'alive' })
    const silent = await joinWorker(server, { name: 'silent' })
    const version = mesh.plan.version
    clock.advance(10_000)
    expect(await request(alive.socket, 'heartbeat')).toEqual({ ok: true })
    clock.advance(6_000) // silent: 16 s without a word; alive: 6 s
    const gone = disconnected(silent.socket)
    const left = once(mesh, 'peer-left')
    server.meshes.sweep()
    expect(await left).toEqual([silent.peerId, 'timeout'])
    expect(await gone).toBe('io server disconnect')
    const plan = await planAtLeast(alive, version + 1)
    expectCovers(plan, [alive.peerId])
    expect(mesh.workers().map((w) => w.id)).toEqual([alive.peerId])
    clock.advance(15_001)
    server.meshes.sweep()
    expect(mesh.workers()).toEqual([])
  })

  test('no capacity pushes an empty plan and keeps the reason', async () => {
    const w = await joinWorker(server, { memoryBytes: 1000 })
    const plan = w.plans.at(-1) as PlanMessage
    expect(plan.stages).toEqual([])
    expect(mesh.planError).toMatchObject({ name: 'PlacementError', code: 'ERR_PLACEMENT_NO_CAPACITY' })
    const health = (await (await fetch(`${server.url}/health`)).json()) as HealthReport
    expect(health.meshes[0]?.planError?.code).toBe('ERR_PLACEMENT_NO_CAPACITY')
    const big = await joinWorker(server, { memoryBytes: 4 * GIB })
    expect(big.plans.at(-1)?.stages.length).toBeGreaterThan(0)
    expect(mesh.planError).toBeUndefined()
  })
})

describe('readiness', () => {
  test('stage-ready from every stage makes the plan ready, once', async () => {
    const a = await joinWorker(server)
    const b = await joinWorker(server)
    const plan = await planAtLeast(a, mesh.plan.version)
    expect(plan.stages).toHaveLength(2)
    const waiting = mesh.waitForReadyPlan()
    let readyEvents = 0
    mesh.on('ready', () => readyEvents++)
    expect(await request(a.socket, 'stage-ready', { planVersion: plan.version })).toEqual({
      ok: true,
      stale: false,
    })
    expect(mesh.isReady()).toBe(false)
    await request(b.socket, 'stage-ready', { planVersion: plan.version })
    expect(await waiting).toEqual(plan)
    await request(b.socket, 'stage-ready', { planVersion: plan.version })
    expect(readyEvents).toBe(1)
    await expect(mesh.waitForReadyPlan()).resolves.toEqual(plan)
    const health = (await (await fetch(`${server.url}/health`)).json()) as HealthReport
    expect(health.meshes[0]?.ready).toBe(true)
  })

  test("a key taking over another server's member is ready again only once its new session says so", async () => {
    // This mesh as one server's replica of a cluster's (the cluster itself is stubbed out here).
    const quiet = { signal: () => {}, plan: () => {}, peerLeft: () => {} }
    mesh.replicate({ ...LOCAL_ONLY, serverId: 'srv1', remoteSink: () => quiet })
    // As another server lists it: the only worker, holding every layer, loaded.
    const identity = generateIdentity()
    const id = peerIdFromPublicKey(identity.publicKey)
    const record = {
      id,
      joinedAt: 1,
      capabilities: caps('mover') as PeerCapabilities,
      publicKey: toBase64url(identity.publicKey),
    }
    mesh.applyMember('srv2', record, identity.publicKey)
    const plan = mesh.plan
    expect(plan.stages.map((st) => st.peerId)).toEqual([id])
    mesh.applyReady(id, plan.version)
    expect(mesh.isReady()).toBe(true)
    // It fails over to this server with a fresh session (a tab starts afresh): same plan, not ready.
    let readyEvents = 0
    mesh.on('ready', () => readyEvents++)
    const w = await joinWorker(server, { name: 'mover', identity })
    expect(w.peerId).toBe(id)
    expect(mesh.plan.version).toBe(plan.version)
    expect(mesh.isReady()).toBe(false)
    await request(w.socket, 'stage-ready', { planVersion: plan.version })
    expect(mesh.isReady()).toBe(true)
    // The 'ready' the gateway rebuilds its pipeline on, for the same plan.
    expect(readyEvents).toBe(1)
  })

  test('a re-plan resets readiness; stale versions are acknowledged but ignored', async () => {
    const a = await joinWorker(server)
    const old = mesh.plan
    await request(a.socket, 'stage-ready', { planVersion: old.version })
    expect(mesh.isReady()).toBe(true)
    const b = await joinWorker(server)
    const plan = await planAtLeast(a, old.version + 1)
    expect(mesh.isReady()).toBe(false)
    expect(await request(a.socket, 'stage-ready', { planVersion: old.version })).toEqual({
      ok: true,
      stale: true,
    })
    const waiting = mesh.waitForReadyPlan()
    await request(a.socket, 'stage-ready', { planVersion: plan.version })
    await request(b.socket, 'stage-ready', { planVersion: plan.version })
    expect((await waiting).version).toBe(plan.version)
  })

  test('waitForReadyPlan rejects on abort and when the mesh closes', async () => {
    const controller = new AbortController()
    const waiting = mesh.waitForReadyPlan(controller.signal)
    controller.abort(new Error('client went away'))
    await expect(waiting).rejects.toThrow('client went away')
    const closing = mesh.waitForReadyPlan()
    await server.close()
    await expect(closing).rejects.toMatchObject({ code: 'ERR_MESH_CLOSED' })
  })
})

describe('local peers', () => {
  test('signal without a socket, get plans, and host no layers', async () => {
    const plans: PlanMessage[] = []
    const signals: Array<[string, SignalData]> = []
    const left: string[] = []
    const gw = mesh.addLocalPeer('gateway', {
      onSignal: (from, data) => signals.push([from, data]),
      onPlan: (p) => plans.push(p),
      onPeerLeft: (id) => left.push(id),
    })
    expect(plans).toEqual([mesh.plan]) // the current plan, before addLocalPeer returned
    const w = await joinWorker(server)
    expect(plans.at(-1)).toEqual(mesh.plan)
    expect(mesh.plan.stages.map((s) => s.peerId)).toEqual([w.peerId])
    expect(mesh.workers().map((x) => x.id)).toEqual([w.peerId])

    await request(w.socket, 'signal', { to: 'gateway', data: { type: 'offer' } })
    expect(signals).toEqual([[w.peerId, { type: 'offer' }]])
    const got = next(w.socket, 'signal')
    gw.sendSignal(w.peerId, { type: 'answer' })
    expect(await got).toEqual({ from: 'gateway', data: { type: 'answer' } })

    expect(() => gw.sendSignal('nobody', {})).toThrow(expect.objectContaining({ code: 'ERR_PEER_UNKNOWN' }))
    expect(() => gw.sendSignal(w.peerId, [] as unknown as SignalData)).toThrow(
      expect.objectContaining({ code: 'ERR_CONTROL_INPUT' }),
    )
    expect(() => mesh.addLocalPeer('gateway', { onSignal() {}, onPlan() {} })).toThrow(/taken/)

    const peerLeft = next<{ peerId: string }>(w.socket, 'peer-left')
    gw.leave()
    expect(await peerLeft).toEqual({ peerId: 'gateway' })
    expect(() => gw.sendSignal(w.peerId, {})).toThrow(expect.objectContaining({ code: 'ERR_NOT_JOINED' }))

    const version = mesh.plan.version
    clock.advance(60_000) // local peers never time out; the worker does
    server.meshes.sweep()
    expect(mesh.plan.version).toBe(version + 1)
    expect(left).toEqual([])
  })

  test('a throwing local handler does not break the sender', async () => {
    mesh.addLocalPeer('gateway', {
      onSignal: () => {
        throw new Error('boom')
      },
      onPlan: () => undefined,
    })
    const w = await joinWorker(server)
    expect(await request(w.socket, 'signal', { to: 'gateway', data: {} })).toEqual({ ok: true })
  })
})

describe('/health and /metrics', () => {
  test('report peers, plan and counters', async () => {
    const a = await joinWorker(server, { name: 'alpha', memoryBytes: 2 * GIB })
    const b = await joinWorker(server, { name: 'beta' })
    await request(b.socket, 'leave')
    const res = await fetch(`${server.url}/health`)
    expect(res.status).toBe(200)
    const health = (await res.json()) as HealthReport
    expect(health).toEqual({
      status: 'ok',
      meshes: [
        {
          name: 'default',
          modelId: mesh.modelId,
          peers: [
            {
              id: a.peerId,
              name: 'alpha',
              backend: 'cpu',
              numericClass: 'cpu/fp32',
              memoryBytes: 2 * GIB,
              layerStepsPerSec: 1000,
              excluded: false,
            },
          ],
          plan: mesh.plan,
          ready: false,
          // No gateway has dialled anyone or generated anything yet.
          links: [],
          tokensGenerated: 0,
        },
      ],
    })

    server.metrics.tokens.inc({ mesh: 'default', kind: 'prompt' }, 5)
    server.metrics.requestDuration.observe({ route: '/v1/chat/completions', status: '200' }, 0.3)
    const metrics = await fetch(`${server.url}/metrics`)
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/)
    const text = await metrics.text()
    expect(text).toMatch(/^butterfly_peers\{mesh="default"\} 1$/m)
    expect(text).toMatch(/^butterfly_replans_total\{mesh="default"\} 3$/m) // join, join, leave
    expect(text).toMatch(/^butterfly_tokens_total\{mesh="default",kind="prompt"\} 5$/m)
    expect(text).toMatch(
      /^butterfly_request_duration_seconds_count\{route="\/v1\/chat\/completions",status="200"\} 1$/m,
    )
    for (const name of ['stage_step_seconds', 'bytes_sent_total', 'generations_rejected_total']) {
      expect(text).toContain(`# TYPE butterfly_${name} `)
    }
    expect(text).not.toContain('process_cpu') // the server's own registry, not the global default
  })

  test('unknown routes get the JSON error shape', async () => {
    const res = await fetch(`${server.url}/nope`)
    expect(res.status).toBe(404)
    expect(await res.json()).toEqual({
      error: { message: 'no route for GET /nope', type: 'not_found_error', code: 'not_found' },
    })
  })
})
