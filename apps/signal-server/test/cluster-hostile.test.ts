import { generateIdentity, peerIdFromPublicKey, signJoinProof, toBase64url } from '@butterfly/core'
import { encode } from '@msgpack/msgpack'
import { afterAll, beforeAll, expect, test, vi } from 'vitest'
import type { EvidenceSource } from '../src/control/mesh.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { type ClusterFixture, startClusterFixture } from './cluster-fixture.js'
import {
  caps,
  clusterRejected,
  connect,
  disconnected,
  joinPayload,
  joinWorker,
  meshOf,
  next,
  request,
  workerIds,
} from './helpers.js'

vi.setConfig({ testTimeout: 20_000 })

// Two in-process servers on one real redis-server, and a rogue process with write access to that
// Redis: malformed member records and liveness values, forged and replayed plans, poison in the
// socket.io adapter's stream and channels, forged cross-server signals, and a peer claiming a
// session another server holds. Each is refused under a stable code and nothing else changes.
// Syncs are driven by hand (cluster.sync()), so every assertion follows a known round.

let fixture: ClusterFixture
let a: SignalServer
let b: SignalServer
let rogue: ClusterFixture['rogue']
const PREFIX = 'butterfly:'

beforeAll(async () => {
  fixture = await startClusterFixture((meshes, url) => [
    { meshes, redis: { url, syncMs: 3_600_000 } },
    // B refuses a signal from an unknown sender after the one sync it forces (A holds it 5 s).
    { meshes, redis: { url, syncMs: 3_600_000, holdSignalMs: 0 } },
  ])
  ;[a, b] = fixture.servers as [SignalServer, SignalServer]
  rogue = fixture.rogue
})
afterAll(() => fixture?.close())

const sync = () => fixture.sync()
const rejected = clusterRejected

test('a worker joined to A is a member of B, and signals cross between them', async () => {
  const w = await joinWorker(a, { name: 'w' })
  const x = await joinWorker(b, { name: 'x' })
  await sync()
  expect(workerIds(a)).toEqual([w.peerId, x.peerId].sort())
  expect(workerIds(b)).toEqual([w.peerId, x.peerId].sort())
  expect(meshOf(b).plan).toEqual(meshOf(a).plan)
  const got = next<{ from: string; data: unknown }>(w.socket, 'signal')
  expect(await request(x.socket, 'signal', { to: w.peerId, data: { sdp: 'offer' } })).toEqual({ ok: true })
  expect(await got).toEqual({ from: x.peerId, data: { sdp: 'offer' } })
})

test('malformed member records and liveness values from a rogue server are refused', async () => {
  const before = workerIds(b)
  const stolen = before[0] as string
  const intruder = generateIdentity()
  const good = { id: peerIdFromPublicKey(intruder.publicKey), joinedAt: 1, capabilities: caps('evil') }
  await rogue
    .multi()
    .sAdd(`${PREFIX}mesh:default:servers`, ['rogue1', 'rogue2', 'bad id!'])
    .set(`${PREFIX}server:rogue1`, '{"gen":7}')
    .set(`${PREFIX}server:rogue2`, 'not json')
    .hSet(`${PREFIX}mesh:default:members:rogue1`, {
      notjson: '{',
      [good.id]: JSON.stringify({ ...good, publicKey: 'AAAA' }),
      mismatch: JSON.stringify({ ...good, id: 'other' }),
      // Another peer's id under the intruder's key: a session the rogue does not hold.
      [stolen]: JSON.stringify({ ...good, id: stolen, publicKey: toBase64url(intruder.publicKey) }),
      badcaps: JSON.stringify({ id: 'badcaps', joinedAt: 1, capabilities: { backend: 'abacus' } }),
    })
    .exec()
  const payload = await rejected(b, 'ERR_CLUSTER_PAYLOAD')
  await b.cluster?.sync()
  expect(workerIds(b)).toEqual(before)
  expect(meshOf(b).ownerOf(stolen)).not.toBe('rogue1')
  expect(await rejected(b, 'ERR_CLUSTER_PAYLOAD')).toBeGreaterThanOrEqual(payload + 4)
  expect(await rejected(b, 'ERR_CLUSTER_SESSION')).toBeGreaterThanOrEqual(1)
  // An oversized hash is not even read.
  const many = Object.fromEntries(Array.from({ length: 20_001 }, (_, i) => [`p${i}`, '{}']))
  await rogue.hSet(`${PREFIX}mesh:default:members:rogue1`, many)
  await rogue.set(`${PREFIX}server:rogue1`, '{"gen":8}')
  await expect(b.cluster?.sync()).rejects.toMatchObject({ code: 'ERR_CLUSTER_PAYLOAD' })
  await rogue.del([
    `${PREFIX}mesh:default:members:rogue1`,
    `${PREFIX}server:rogue1`,
    `${PREFIX}server:rogue2`,
  ])
  await rogue.sRem(`${PREFIX}mesh:default:servers`, ['rogue1', 'rogue2', 'bad id!'])
  await sync()
  expect(workerIds(b)).toEqual(before)
})

test('forged, replayed and malformed plans are refused; the planner puts its own back', async () => {
  const planKey = `${PREFIX}mesh:default:plan`
  const current = meshOf(b).plan
  const stored = JSON.parse((await rogue.get(planKey)) as string) as { planner: string }
  const planning = [a, b].find((s) => s.cluster?.planning('default')) as SignalServer
  expect(stored.planner).toBe(planning.cluster?.serverId)
  const follower = planning === a ? b : a

  await rogue.set(
    planKey,
    JSON.stringify({ ...stored, planner: 'rogue1', plan: { ...current, version: 99 } }),
  )
  await follower.cluster?.sync()
  expect(meshOf(follower).plan.version).toBe(current.version)
  expect(await rejected(follower, 'ERR_CLUSTER_NOT_PLANNER')).toBe(1)

  for (const bad of [
    '{',
    '[]',
    JSON.stringify({ ...stored, plan: { ...current, version: 98, mesh: 'other' } }),
  ]) {
    await rogue.set(planKey, bad)
    await follower.cluster?.sync()
    expect(meshOf(follower).plan.version).toBe(current.version)
  }
  expect(await rejected(follower, 'ERR_CLUSTER_PAYLOAD')).toBeGreaterThanOrEqual(3)

  // A replay: the planner's own words, once current, written back after the plan moved on.
  const old = JSON.stringify(stored)
  const y = await joinWorker(follower, { name: 'y' })
  await sync()
  // Excluded by the follower's gateway: the planner re-plans, with the next version.
  expect(meshOf(follower).exclude(y.peerId, 'outvoted')).toBe(true)
  await sync()
  const moved = meshOf(follower).plan
  expect(moved.version).toBeGreaterThan(current.version)
  expect(moved.excluded).toContain(y.peerId)
  expect(meshOf(planning).plan).toEqual(moved)
  const stale = await rejected(follower, 'ERR_CLUSTER_STALE')
  await rogue.set(planKey, old)
  await follower.cluster?.sync()
  expect(meshOf(follower).plan).toEqual(moved)
  expect(await rejected(follower, 'ERR_CLUSTER_STALE')).toBe(stale + 1)
  await planning.cluster?.sync()
  expect(JSON.parse((await rogue.get(planKey)) as string).plan.version).toBe(meshOf(planning).plan.version)
  y.socket.disconnect()
  await sync()
})

test("poison in the socket.io adapter's stream and channel stops nothing", async () => {
  const w = await joinWorker(a, { name: 'w2' })
  const x = await joinWorker(b, { name: 'x2' })
  await sync()
  const refusedBefore = await rejected(a, 'ERR_CLUSTER_PAYLOAD')
  // One broadcast first, so B's stream reader holds a real offset (not '$') when the poison comes.
  const before = next<string>(x.socket, 'probe')
  a.io.to(x.socket.id as string).emit('probe', 'before the poison')
  expect(await before).toBe('before the poison')
  // Unread, a malformed stream entry would be retried by the adapter's reader forever.
  await rogue.xAdd(`${PREFIX}socket.io`, '*', { uid: 'rogue', nsp: '/', type: '3' })
  await rogue.xAdd(`${PREFIX}socket.io`, '*', { uid: 'rogue', nsp: '/', type: '3', data: '{"packet":1}' })
  const channel = `${PREFIX}socket.io#/#`
  await rogue.publish(channel, Buffer.from([0xc1, 0xff]))
  // A server-side event under io's own name would hand a forged socket to 'connection'.
  const forged = encode({ uid: 'rogue', nsp: '/', type: 9, data: { packet: ['connection', { id: 'x' }] } })
  await rogue.publish(channel, Buffer.from(forged))
  // A forged cross-server signal: x is not a member of server 'rogue'.
  const fake = encode({
    uid: 'rogue',
    nsp: '/',
    type: 9,
    data: {
      packet: [
        'butterfly:cluster-signal',
        {
          mesh: 'default',
          sender: 'rogue',
          owner: a.cluster?.serverId,
          from: x.peerId,
          to: w.peerId,
          data: { sdp: 'forged' },
        },
      ],
    },
  })
  await rogue.publish(channel, Buffer.from(fake))
  // Under B's real id, to a peer A does not hold: refused at once.
  const misrouted = { sender: b.cluster?.serverId, from: x.peerId, to: 'nobody-here' }
  await rogue.publish(channel, Buffer.from(crossSignal(misrouted, a, { sdp: 'misrouted' })))
  const got = next<{ from: string; data: unknown }>(w.socket, 'signal')
  await request(x.socket, 'signal', { to: w.peerId, data: { sdp: 'real' } })
  // The first signal w sees is the real one, sent after the poison and the forgery.
  expect(await got).toEqual({ from: x.peerId, data: { sdp: 'real' } })
  // A broadcast from A to x's socket on B travels the stream, behind the poisoned entries.
  const probe = next<string>(x.socket, 'probe')
  a.io.to(x.socket.id as string).emit('probe', 'after the poison')
  expect(await probe).toBe('after the poison')
  expect(await rejected(a, 'ERR_CLUSTER_PAYLOAD')).toBeGreaterThanOrEqual(refusedBefore + 2)
  expect(await rejected(a, 'ERR_CLUSTER_SESSION')).toBeGreaterThanOrEqual(1)
})

/** A cross-server signal as socket.io's adapter carries it, addressed to `to`'s server. */
function crossSignal(
  route: { sender: string | undefined; from: string; to: string },
  owner: SignalServer,
  data: unknown,
): Uint8Array {
  const signal = { mesh: 'default', owner: owner.cluster?.serverId, ...route, data }
  return encode({ uid: 'rogue', nsp: '/', type: 9, data: { packet: ['butterfly:cluster-signal', signal] } })
}

test('a signal from a peer not yet read here waits for the sync that brings it; an unknown sender is refused when its hold ends', async () => {
  const channel = `${PREFIX}socket.io#/#`
  const w = await joinWorker(a, { name: 'w3' })
  const x = await joinWorker(b, { name: 'x3' })
  await sync()
  // As B relays for a member it registered a moment ago and A has not read: A holds it.
  const identity = generateIdentity()
  const early = peerIdFromPublicKey(identity.publicKey)
  const route = { sender: b.cluster?.serverId, from: early, to: w.peerId }
  await rogue.publish(channel, Buffer.from(crossSignal(route, a, { sdp: 'early' })))
  // A real signal behind it on the same channel arrives first: the early one was held, not lost.
  const first = next<{ from: string; data: unknown }>(w.socket, 'signal')
  await request(x.socket, 'signal', { to: w.peerId, data: { sdp: 'behind' } })
  expect(await first).toEqual({ from: x.peerId, data: { sdp: 'behind' } })
  const held = next<{ from: string; data: unknown }>(w.socket, 'signal')
  await joinWorker(b, { name: 'early', identity })
  await sync()
  expect(await held).toEqual({ from: early, data: { sdp: 'early' } })

  // B holds for no time: an unknown sender is refused after the sync it forces, and never arrives.
  const refused = await rejected(b, 'ERR_CLUSTER_SESSION')
  const ghost = peerIdFromPublicKey(generateIdentity().publicKey)
  const forged = { sender: a.cluster?.serverId, from: ghost, to: x.peerId }
  await rogue.publish(channel, Buffer.from(crossSignal(forged, b, { sdp: 'ghost' })))
  await vi.waitFor(async () => expect(await rejected(b, 'ERR_CLUSTER_SESSION')).toBe(refused + 1))
  const after = next<{ from: string; data: unknown }>(x.socket, 'signal')
  await request(w.socket, 'signal', { to: x.peerId, data: { sdp: 'real' } })
  expect(await after).toEqual({ from: w.peerId, data: { sdp: 'real' } })
})

test("a replayed join proof from another server's session is refused; the key holder itself takes the session over", async () => {
  const identity = generateIdentity()
  const w = await joinWorker(a, { name: 'mover', identity })
  await sync()
  // The proof of A's connection, replayed to B: it signs A's nonce, not B's.
  const thief = await connect(b)
  const fields = { mesh: 'default', token: '', capabilities: caps('mover') }
  const proofOnA = signJoinProof(identity, 'default', 'x'.repeat(43))
  const refused = await request<{ ok: boolean; error: { code: string } }>(
    thief,
    'join',
    joinPayload(thief, fields, generateIdentity(), {
      publicKey: toBase64url(identity.publicKey),
      proof: proofOnA,
    }),
  )
  expect(refused).toMatchObject({ ok: false, error: { code: 'ERR_JOIN_PROOF' } })
  expect(meshOf(b).ownerOf(w.peerId)).toBe(a.cluster?.serverId)

  // The worker itself (it holds the key) fails over to B before A noticed it left.
  const cut = disconnected(w.socket)
  const again = await joinWorker(b, { name: 'mover', identity })
  expect(again.peerId).toBe(w.peerId)
  expect(meshOf(b).ownerOf(w.peerId)).toBe(b.cluster?.serverId)
  await sync()
  expect(await cut).toBe('io server disconnect')
  expect(meshOf(a).ownerOf(w.peerId)).toBe(b.cluster?.serverId)
  expect(
    meshOf(a)
      .workers()
      .some((p) => p.id === w.peerId),
  ).toBe(true)
})

test("votes seen by two gateways add up: a rare liar under each one's sample size is excluded on both", async () => {
  const liar = await joinWorker(a, { name: 'rare' })
  await sync()
  // The rule a gateway's ReputationBook applies by default (these servers run no gateway).
  // 125 and 97 outcomes: each under the 200 the rule needs; together 222, with 5 lies (2.3%).
  const seen = (agreements: number, disagreements: number): EvidenceSource => ({
    minRateSamples: 200,
    maxDisagreementRate: 0.02,
    evidence: () => new Map([[liar.peerId, { agreements, disagreements }]]),
  })
  meshOf(a).provideEvidence(seen(122, 3))
  await sync()
  expect(meshOf(a).exclusionReason(liar.peerId)).toBeUndefined()
  expect(await rogue.hGet(`${PREFIX}mesh:default:evidence:${a.cluster?.serverId}`, liar.peerId)).toBe(
    '{"a":122,"d":3}',
  )
  // Malformed evidence in B's name is refused and changes nothing.
  const payload = await rejected(a, 'ERR_CLUSTER_PAYLOAD')
  await rogue.hSet(`${PREFIX}mesh:default:evidence:${b.cluster?.serverId}`, {
    [liar.peerId]: '{"a":-1,"d":900}',
    'not a peer!': '{"a":0,"d":900}',
  })
  await a.cluster?.sync()
  expect(meshOf(a).exclusionReason(liar.peerId)).toBeUndefined()
  expect(await rejected(a, 'ERR_CLUSTER_PAYLOAD')).toBe(payload + 2)

  meshOf(b).provideEvidence(seen(95, 2))
  await sync()
  for (const s of [a, b]) {
    expect(meshOf(s).exclusionReason(liar.peerId)).toBe('outvoted')
    expect(meshOf(s).plan.excluded).toContain(liar.peerId)
  }
  liar.socket.disconnect()
  await sync()
})
