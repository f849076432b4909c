import { encode } from '@msgpack/msgpack'
import { afterAll, beforeAll, expect, test, vi } from 'vitest'
import { CLUSTER_EVENTS } from '../src/control/cluster-adapter.js'
import { ClusterSeal } from '../src/control/cluster-seal.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { type ClusterFixture, startClusterFixture } from './cluster-fixture.js'
import { clusterRejected, joinWorker, meshOf, next, request, workerIds } from './helpers.js'

vi.setConfig({ testTimeout: 20_000 })

// Two in-process servers sharing a cluster secret on one real redis-server, a third server with
// another secret on the same keys, and a rogue client that can write to Redis but does not know
// the secret. The sealed pair works as a cluster; everything the rogue or the third server writes
// or sends is refused with ERR_CLUSTER_FORGED, and a sealed message replayed late is stale.
// Syncs are driven by hand.

const SECRET = 'a cluster secret of some length'
const PREFIX = 'sealed:'
let fixture: ClusterFixture
let a: SignalServer
let b: SignalServer
let other: SignalServer
let rogue: ClusterFixture['rogue']
/** The workers of the first test: one on A, one on B. */
const ids = { w: '', x: '' }

beforeAll(async () => {
  fixture = await startClusterFixture((meshes, url) => {
    const redis = { url, syncMs: 3_600_000, keyPrefix: PREFIX }
    return [
      { meshes, redis: { ...redis, secret: SECRET } },
      { meshes, redis: { ...redis, secret: SECRET } },
      { meshes, redis: { ...redis, secret: 'another secret, not theirs' } },
    ]
  })
  ;[a, b, other] = fixture.servers as [SignalServer, SignalServer, SignalServer]
  rogue = fixture.rogue
})
afterAll(() => fixture?.close())

const sync = () => fixture.sync([a, b, other, a, b])
const rejected = clusterRejected
const key = (...parts: string[]) => PREFIX + parts.join(':')

test('the sealed pair shares members and signals; the server with another secret sees nobody, and nobody sees its peers', async () => {
  const forgedBefore = await rejected(a, 'ERR_CLUSTER_FORGED')
  const w = await joinWorker(a, { name: 'w' })
  const x = await joinWorker(b, { name: 'x' })
  const stranger = await joinWorker(other, { name: 'stranger' })
  ids.w = w.peerId
  ids.x = x.peerId
  await sync()
  expect(workerIds(a)).toEqual([w.peerId, x.peerId].sort())
  expect(workerIds(b)).toEqual([w.peerId, x.peerId].sort())
  expect(workerIds(other)).toEqual([stranger.peerId])
  expect(await rejected(a, 'ERR_CLUSTER_FORGED')).toBeGreaterThan(forgedBefore)
  // Stored values carry their seal: a 43-character MAC, a dot, then the record.
  const stored = await rogue.hGet(key('mesh', 'default', 'members', a.cluster?.serverId as string), w.peerId)
  expect(stored).toMatch(new RegExp(`^[A-Za-z0-9_-]{43}\\.\\{"id":"${w.peerId}"`))
  const got = next<{ from: string; data: unknown }>(w.socket, 'signal')
  expect(await request(x.socket, 'signal', { to: w.peerId, data: { sdp: 'offer' } })).toEqual({ ok: true })
  expect(await got).toEqual({ from: x.peerId, data: { sdp: 'offer' } })
  // A signal from the other server's peer to w is refused on A: its seal is another secret's.
  const forged = await rejected(a, 'ERR_CLUSTER_FORGED')
  meshOf(other).applyMember(a.cluster?.serverId as string, { id: w.peerId, joinedAt: 1 }, undefined)
  await request(stranger.socket, 'signal', { to: w.peerId, data: { sdp: 'stranger' } })
  await vi.waitFor(async () => expect(await rejected(a, 'ERR_CLUSTER_FORGED')).toBe(forged + 1))
})

test('values the rogue writes or edits without the secret are refused, and change nothing', async () => {
  const plan = meshOf(b).plan
  const forgedBefore = await rejected(b, 'ERR_CLUSTER_FORGED')
  const planKey = key('mesh', 'default', 'plan')
  const sealed = (await rogue.get(planKey)) as string
  // The planner's own plan with one number changed: the MAC no longer matches.
  await rogue.set(planKey, sealed.replace(`"version":${plan.version}`, `"version":${plan.version + 5}`))
  const { w } = ids
  // An exclusion without a seal, and a ready mark for the next plan without one.
  await rogue.hSet(key('mesh', 'default', 'excluded'), w, 'outvoted')
  await rogue.sAdd(key('mesh', 'default', 'ready', String(plan.version)), 'not-a-sealed-mark')
  // A's sealed liveness value, moved under a made-up server's key: bound to A's key, it fails.
  const beat = (await rogue.get(key('server', a.cluster?.serverId as string))) as string
  await rogue.set(key('server', 'rogue1'), beat)
  await rogue.sAdd(key('mesh', 'default', 'servers'), 'rogue1')
  await b.cluster?.sync()
  expect(meshOf(b).plan).toEqual(plan)
  expect(meshOf(b).exclusionReason(w)).toBeUndefined()
  expect(workerIds(b)).toHaveLength(2)
  expect(await rejected(b, 'ERR_CLUSTER_FORGED')).toBeGreaterThanOrEqual(forgedBefore + 4)
  await rogue.hDel(key('mesh', 'default', 'excluded'), w)
  await rogue.del(key('server', 'rogue1'))
  await rogue.sRem(key('mesh', 'default', 'servers'), 'rogue1')
  await sync()
  expect(workerIds(b)).toHaveLength(2)
})

test('a cross-server message without a seal is forged; a sealed one replayed late is stale', async () => {
  const { w, x } = ids
  const channel = `${PREFIX}socket.io#/#`
  const seal = new ClusterSeal(SECRET)
  const message = (body: Record<string, unknown>, mac?: string) =>
    Buffer.from(
      encode({
        uid: 'rogue',
        nsp: '/',
        type: 9,
        data: { packet: [CLUSTER_EVENTS.signal, mac === undefined ? body : { ...body, mac }] },
      }),
    )
  const signal = { mesh: 'default', sender: b.cluster?.serverId, owner: a.cluster?.serverId, from: x, to: w }
  const fresh = { ...signal, data: { sdp: 'x' }, at: Date.now() }
  const late = { ...signal, data: { sdp: 'x' }, at: Date.now() - 120_000 }
  const forged = await rejected(a, 'ERR_CLUSTER_FORGED')
  const stale = await rejected(a, 'ERR_CLUSTER_STALE')
  await rogue.publish(channel, message(fresh))
  await rogue.publish(channel, message(fresh, 'A'.repeat(43)))
  await rogue.publish(channel, message(late, seal.mac(CLUSTER_EVENTS.signal, JSON.stringify(late))))
  await vi.waitFor(async () => {
    expect(await rejected(a, 'ERR_CLUSTER_FORGED')).toBe(forged + 2)
    expect(await rejected(a, 'ERR_CLUSTER_STALE')).toBe(stale + 1)
  })
})
