import { generateIdentity } from '@butterfly/core'
import { afterAll, beforeAll, expect, test, vi } from 'vitest'
import { ClusterSeal } from '../src/control/cluster-seal.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { type ClusterFixture, startClusterFixture } from './cluster-fixture.js'
import { clusterRejected, disconnected, joinWorker, meshOf, workerIds } from './helpers.js'

vi.setConfig({ testTimeout: 20_000 })

// Per-peer join tokens across two in-process servers on one real redis-server, both requiring
// them: a token issued on A admits its peer on B, its binding follows it back to A, and revoking
// it on A drops the peer from B and refuses it there. Records a rogue writes are refused.

const ADMIN = 'cluster-admin-token'
const SECRET = 'tokens test cluster secret'
let fixture: ClusterFixture
let a: SignalServer
let b: SignalServer
let rogue: ClusterFixture['rogue']

beforeAll(async () => {
  fixture = await startClusterFixture((meshes, url) => {
    const init = {
      meshes,
      adminToken: ADMIN,
      requirePeerTokens: true,
      redis: { url, syncMs: 3_600_000, secret: SECRET },
    }
    return [init, init]
  })
  ;[a, b] = fixture.servers as [SignalServer, SignalServer]
  rogue = fixture.rogue
})
afterAll(() => fixture?.close())

const sync = () => fixture.sync()
function admin(s: SignalServer, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${s.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  })
}
const joinFails = (s: SignalServer, token: string, identity = generateIdentity()) =>
  joinWorker(s, { name: 'w', token, identity }).then(
    () => 'joined',
    (err: Error) => err.message,
  )

test('a token issued on A admits its peer on B, binds there for both, and a revocation on A drops it from B', async () => {
  const issued = (await (
    await admin(a, 'POST', '/admin/join-tokens', { mesh: 'default', label: 'w' })
  ).json()) as {
    id: string
    token: string
  }
  expect(await joinFails(b, issued.token)).toBe('join failed: ERR_PEER_TOKEN_REQUIRED')
  await sync()
  const identity = generateIdentity()
  const w = await joinWorker(b, { name: 'w', token: issued.token, identity })
  await sync()
  expect(workerIds(a)).toEqual([w.peerId])
  // Bound on B to w's identity: A refuses the token to anyone else.
  expect(a.admission.tokens?.get(issued.id)?.boundPeerId).toBe(w.peerId)
  expect(await joinFails(a, issued.token)).toBe('join failed: ERR_JOIN_TOKEN_BOUND')

  const cut = disconnected(w.socket)
  expect((await admin(a, 'DELETE', `/admin/join-tokens/${issued.id}`)).status).toBe(200)
  await sync()
  expect(await cut).toBe('io server disconnect')
  expect(workerIds(b)).toEqual([])
  expect(b.admission.tokens?.get(issued.id)?.status).toBe('revoked')
  expect(await joinFails(b, issued.token, identity)).toBe('join failed: ERR_JOIN_TOKEN_REVOKED')
  expect(meshOf(a).workers()).toEqual([])
})

test('token records a rogue writes are refused: unsealed ones, and sealed ones that are malformed or clash', async () => {
  const before = await clusterRejected(a, 'ERR_CLUSTER_FORGED')
  const bId = b.cluster?.serverId as string
  const forged = {
    id: 'jt_0123456789abcdef',
    mesh: 'default',
    label: null,
    sha256: 'a'.repeat(64),
    createdAt: new Date().toISOString(),
    expiresAt: null,
    revokedAt: null,
    boundPeerId: null,
  }
  await rogue.hSet(`butterfly:tokens:${bId}`, forged.id, JSON.stringify(forged))
  // B writes its generation sealed; the rogue cannot, so it bumps nothing A would trust.
  await rogue.set(`butterfly:tokens-gen:${bId}`, '99')
  await a.cluster?.sync()
  expect(a.admission.tokens?.get(forged.id)).toBeUndefined()
  expect(await clusterRejected(a, 'ERR_CLUSTER_FORGED')).toBeGreaterThan(before)
  // B's own next write seals its generation again; the unsealed record stays refused.
  await b.cluster?.sync()
  await a.cluster?.sync()
  expect(a.admission.tokens?.get(forged.id)).toBeUndefined()

  // With the secret (as a server would seal them): a malformed record, one stored under another
  // id, and one reusing a known token's id with another hash. None is taken in.
  const seal = new ClusterSeal(SECRET)
  const key = `butterfly:tokens:${bId}`
  const known = a.admission.tokens?.list()[0]?.id as string
  const bad = {
    jt_1111111111111111: JSON.stringify({ ...forged, id: 'jt_1111111111111111', sha256: 'nothex' }),
    jt_2222222222222222: JSON.stringify({ ...forged, id: 'jt_3333333333333333', sha256: 'b'.repeat(64) }),
    [known]: JSON.stringify({ ...forged, id: known, sha256: 'c'.repeat(64) }),
  }
  const payload = await clusterRejected(a, 'ERR_CLUSTER_PAYLOAD')
  await rogue.del(key)
  await rogue.hSet(
    key,
    Object.fromEntries(Object.entries(bad).map(([id, r]) => [id, seal.seal(`${key}#${id}`, r)])),
  )
  await rogue.set(`butterfly:tokens-gen:${bId}`, seal.seal(`butterfly:tokens-gen:${bId}`, '1000'))
  await a.cluster?.sync()
  expect(await clusterRejected(a, 'ERR_CLUSTER_PAYLOAD')).toBe(payload + 3)
  expect(a.admission.tokens?.list().map((t) => t.id)).toEqual([known])
})
