import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateIdentity, peerIdFromPublicKey } from '@butterfly/core'
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest'
import { type JoinTokenRecord, JoinTokenStore, parseJoinTokenFile } from '../src/control/join-tokens.js'
import type { SignalServer } from '../src/http/signal-server.js'
import {
  caps,
  closeClients,
  connect,
  disconnected,
  joinPayload,
  joinWorker,
  manualClock,
  request,
  startServer,
  tinyModel,
} from './helpers.js'

vi.setConfig({ testTimeout: 15_000 })

const ADMIN = 'adm1n-secret'
let model: Awaited<ReturnType<typeof tinyModel>>
let dir: string
let server: SignalServer
const clock = manualClock(Date.parse('2030-01-01T00:00:00Z'))

beforeAll(async () => {
  model = await tinyModel()
  dir = await mkdtemp(join(tmpdir(), 'bf-tokens-'))
  server = await startServer({
    meshes: [
      { name: 'default', modelDir: model.dir, meshToken: 'shared' },
      { name: 'other', modelDir: model.dir },
    ],
    joinTokenFile: join(dir, 'tokens.json'),
    adminToken: ADMIN,
    now: clock.now,
  })
})
afterEach(() => closeClients(server))
afterAll(async () => {
  await server.close()
  await model.cleanup()
  await rm(dir, { recursive: true, force: true })
})

type Refusal = { ok: false; error: { code: string; message: string }; retryAfterMs?: number }

function admin(method: string, path: string, body?: unknown, token = ADMIN) {
  return fetch(`${server.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  })
}

async function issue(body: Record<string, unknown> = { mesh: 'default' }) {
  const res = await admin('POST', '/admin/join-tokens', body)
  expect(res.status).toBe(201)
  return (await res.json()) as {
    id: string
    token: string
    mesh: string
    label: string | null
    expiresAt: string | null
  }
}

/** A join over a fresh connection; resolves with the ack. */
async function tryJoin(token: string, identity = generateIdentity(), mesh = 'default') {
  const socket = await connect(server)
  return request<Refusal | { ok: true; peerId: string }>(
    socket,
    'join',
    joinPayload(socket, { mesh, token, capabilities: caps() }, identity),
  )
}

describe('per-peer join tokens', () => {
  test('issue → join works; the file keeps only a hash; the list shows no secret', async () => {
    const t = await issue({ mesh: 'default', label: 'alice' })
    expect(t).toMatchObject({ mesh: 'default', label: 'alice', expiresAt: null })
    expect(t.token).toMatch(/^bft_[A-Za-z0-9_-]{43}$/)
    const w = await joinWorker(server, { token: t.token })
    const file = await readFile(join(dir, 'tokens.json'), 'utf8')
    expect(file).not.toContain(t.token)
    const listed = (await (await admin('GET', '/admin/join-tokens')).json()) as {
      tokens: Array<Record<string, unknown>>
    }
    const mine = listed.tokens.find((x) => x.id === t.id)
    expect(mine).toMatchObject({ status: 'bound', boundPeerId: w.peerId, label: 'alice' })
    expect(JSON.stringify(listed)).not.toContain(t.token)
    expect(JSON.stringify(listed)).not.toContain('sha256')
  })

  test('revoke → the member is removed and disconnected at once, and cannot rejoin', async () => {
    const t = await issue()
    const identity = generateIdentity()
    const w = await joinWorker(server, { token: t.token, identity })
    const gone = disconnected(w.socket)
    const res = await admin('DELETE', `/admin/join-tokens/${t.id}`)
    expect(res.status).toBe(200)
    expect(((await res.json()) as { revoked: { status: string } }).revoked.status).toBe('revoked')
    expect(await gone).toBe('io server disconnect')
    expect(server.meshes.get('default')?.has(w.peerId)).toBe(false)
    const again = (await tryJoin(t.token, identity)) as Refusal
    expect(again.error.code).toBe('ERR_JOIN_TOKEN_REVOKED')
  })

  test('a token is bound to the first identity; another identity is refused', async () => {
    const t = await issue()
    await joinWorker(server, { token: t.token })
    const other = (await tryJoin(t.token)) as Refusal
    expect(other).toMatchObject({ ok: false, error: { code: 'ERR_JOIN_TOKEN_BOUND' } })
  })

  test('the bound identity may come back with it', async () => {
    const t = await issue()
    const identity = generateIdentity()
    const first = await joinWorker(server, { token: t.token, identity })
    const left = disconnected(first.socket)
    await request(first.socket, 'leave')
    first.socket.disconnect()
    await left
    const second = await joinWorker(server, { token: t.token, identity })
    expect(second.peerId).toBe(first.peerId)
  })

  test('an expired token is refused', async () => {
    const t = await issue({ mesh: 'default', expiresInSeconds: 60 })
    clock.advance(61_000)
    expect(((await tryJoin(t.token)) as Refusal).error.code).toBe('ERR_JOIN_TOKEN_EXPIRED')
  })

  test('a token for another mesh is refused', async () => {
    const t = await issue({ mesh: 'other' })
    expect(((await tryJoin(t.token)) as Refusal).error.code).toBe('ERR_JOIN_TOKEN_MESH')
  })

  test('the shared mesh token still admits without --require-peer-tokens', async () => {
    const w = await joinWorker(server, { token: 'shared' })
    expect(server.meshes.get('default')?.has(w.peerId)).toBe(true)
  })

  test('tokens survive a restart: a new server reads the file it wrote', async () => {
    const t = await issue()
    const store = JoinTokenStore.open(join(dir, 'tokens.json'), clock.now)
    expect(store.get(t.id)).toMatchObject({ status: 'unused', mesh: 'default' })
  })
})

describe('the admin API', () => {
  test('without the admin token, 401; a server without --admin-token has no /admin (404)', async () => {
    expect((await admin('GET', '/admin/join-tokens', undefined, 'wrong')).status).toBe(401)
    const res = await fetch(`${server.url}/admin/join-tokens`)
    expect(res.status).toBe(401)
    const plain = await startServer({ meshes: [{ name: 'default', modelDir: model.dir }] })
    try {
      const r = await fetch(`${plain.url}/admin/join-tokens`, {
        headers: { authorization: `Bearer ${ADMIN}` },
      })
      expect(r.status).toBe(404)
    } finally {
      await plain.close()
    }
  })

  const badBodies: Array<[string, unknown, string]> = [
    ['not JSON', '{mesh', ''],
    ['an array', [], 'body'],
    ['a string', '"default"', 'body'],
    ['no mesh', {}, 'mesh'],
    ['an unknown mesh', { mesh: 'nowhere' }, 'mesh'],
    ['a numeric mesh', { mesh: 7 }, 'mesh'],
    ['an unknown field', { mesh: 'default', admin: true }, 'admin'],
    ['a label that is not a string', { mesh: 'default', label: 5 }, 'label'],
    ['a label too long', { mesh: 'default', label: 'x'.repeat(129) }, 'label'],
    ['a label with a newline', { mesh: 'default', label: 'a\nb' }, 'label'],
    ['a zero expiry', { mesh: 'default', expiresInSeconds: 0 }, 'expiresInSeconds'],
    ['a fractional expiry', { mesh: 'default', expiresInSeconds: 1.5 }, 'expiresInSeconds'],
    ['an expiry as a string', { mesh: 'default', expiresInSeconds: '60' }, 'expiresInSeconds'],
    ['an expiry beyond ten years', { mesh: 'default', expiresInSeconds: 1e12 }, 'expiresInSeconds'],
    ['a body over 4 KiB', { mesh: 'default', label: 'x'.repeat(5000) }, ''],
  ]
  test.each(badBodies)('POST with %s is a 400', async (_, body, param) => {
    const res = await admin('POST', '/admin/join-tokens', body)
    expect(res.status).toBeGreaterThanOrEqual(400)
    expect(res.status).toBeLessThan(500)
    const json = (await res.json()) as { error: { code: string; param?: string } }
    if (param !== '') expect(json.error).toMatchObject({ code: 'ERR_ADMIN_INPUT', param })
  })

  test.each([
    ['a malformed id', 'nope', 400],
    ['an unknown id', 'jt_0123456789abcdef', 404],
  ])('DELETE with %s is a %i', async (_, id, status) => {
    const res = await admin('DELETE', `/admin/join-tokens/${id}`)
    expect(res.status).toBe(status)
  })
})

describe('the token file', () => {
  const good = {
    id: 'jt_0123456789abcdef',
    mesh: 'default',
    label: null,
    sha256: 'a'.repeat(64),
    createdAt: '2030-01-01T00:00:00.000Z',
    expiresAt: null,
    revokedAt: null,
    boundPeerId: null,
  }
  const file = (tokens: unknown[]) => JSON.stringify({ version: 1, tokens })
  const bad: Array<[string, string]> = [
    ['not JSON', '{'],
    ['an array', '[]'],
    ['a wrong version', JSON.stringify({ version: 2, tokens: [] })],
    ['tokens not an array', JSON.stringify({ version: 1, tokens: {} })],
    ['a token not an object', file([1])],
    ['a bad id', file([{ ...good, id: 'x' }])],
    ['a bad hash', file([{ ...good, sha256: 'zz' }])],
    ['a bad mesh', file([{ ...good, mesh: 'a/b' }])],
    ['a bad time', file([{ ...good, createdAt: 'yesterday' }])],
    ['a bad bound peer', file([{ ...good, boundPeerId: '../x' }])],
    ['a duplicate id', file([good, { ...good, sha256: 'b'.repeat(64) }])],
    ['a duplicate hash', file([good, { ...good, id: 'jt_fedcba9876543210' }])],
    ['too many tokens', file(Array.from({ length: 10_001 }, () => good))],
    ['over the size cap', ' '.repeat(4 * 1024 * 1024 + 1)],
  ]
  test.each(bad)('%s is ERR_JOIN_TOKEN_FILE', (_, text) => {
    expect(() => parseJoinTokenFile(text, 'tokens.json')).toThrow(
      expect.objectContaining({ code: 'ERR_JOIN_TOKEN_FILE' }),
    )
  })

  test('a good file parses', () => {
    expect(parseJoinTokenFile(file([good]), 'tokens.json')).toHaveLength(1)
  })

  test('a bad file stops the server from starting, with the code', async () => {
    const path = join(dir, 'bad.json')
    await writeFile(path, '{"version": 1, "tokens": [7]}')
    await expect(
      startServer({ meshes: [{ name: 'default', modelDir: model.dir }], joinTokenFile: path }),
    ).rejects.toMatchObject({ code: 'ERR_JOIN_TOKEN_FILE' })
  })
})

describe('merging the records another server shares', () => {
  test('adds new tokens, takes bindings and revocations, never undoes them, refuses clashes', () => {
    const here = JoinTokenStore.open(undefined)
    const there = JoinTokenStore.open(undefined)
    const issued = there.issue({ mesh: 'default', label: 'w' })
    expect(here.merge(there.shared())).toEqual({ revoked: [], refused: 0, error: undefined })
    expect(here.get(issued.id)?.status).toBe('unused')
    const peer = peerIdFromPublicKey(generateIdentity().publicKey)
    expect(there.admit(issued.token, 'default', peer)).toBe(issued.id)
    here.merge(there.shared())
    expect(here.get(issued.id)?.boundPeerId).toBe(peer)
    // An older copy (unbound, live) changes nothing: state only moves forward.
    const old = { ...(there.shared()[0] as JoinTokenRecord), boundPeerId: null }
    there.revoke(issued.id)
    const { revoked } = here.merge(there.shared())
    expect(revoked.map((r) => r.id)).toEqual([issued.id])
    expect(here.merge([old])).toEqual({ revoked: [], refused: 0, error: undefined })
    expect(here.get(issued.id)).toMatchObject({ status: 'revoked', boundPeerId: peer })
    expect(() => here.admit(issued.token, 'default', peer)).toThrow(
      expect.objectContaining({ code: 'ERR_JOIN_TOKEN_REVOKED' }),
    )
    // The same id with another hash, or the same hash under another id or mesh: refused.
    const record = there.shared()[0] as JoinTokenRecord
    const clashes = [
      { ...record, sha256: 'f'.repeat(64) },
      { ...record, id: 'jt_ffffffffffffffff' },
      { ...record, mesh: 'other' },
    ]
    expect(here.merge(clashes).refused).toBe(3)
    expect(here.list()).toHaveLength(1)
  })
})
