import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  aclUrl,
  butterflyAclArgs,
  completionText,
  type Proc,
  type RedisServer,
  referenceText,
  SERVER_BIN,
  start,
  startRedis,
  until,
  WORKER_BIN,
} from '@butterfly/testing/node'
import { afterAll, afterEach, beforeAll, expect, test, vi } from 'vitest'

// Two `butterfly-server --redis` processes on one real redis-server: one mesh. A worker joined to
// server A serves completions asked of server B (B's gateway reaches it through signals relayed
// by A). A is SIGKILLed while B streams a generation through that worker: B's stream goes on to
// the exact end, the worker rejoins through B under the plan it already had, and A, restarted,
// takes that plan as it is (same version: no second plan) and serves exact completions again.
// Then Redis itself restarts (empty) under traffic to both servers. Redis runs with the ACL user
// docs/deploy.md recommends, so everything here also shows that user's rights suffice, and the
// servers seal what they write and send with a cluster secret, as docs/deploy.md recommends too.

const PROMPT = 'To be, or not'
const REDIS_PASSWORD = 'cluster-test-password'
interface Health {
  meshes: Array<{
    ready: boolean
    peers: Array<{ id: string }>
    plan: { version: number; stages: Array<{ peerId: string; start: number; end: number }> }
  }>
}
let cache: string
let redis: RedisServer
const procs: Proc[] = []

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'bf-redis-cluster-'))
  // As docs/deploy.md has it: an ACL user limited to Butterfly's keys and channels.
  redis = await startRedis({ args: butterflyAclArgs(REDIS_PASSWORD) })
})
// Each test starts from no process and an empty Redis (it keeps nothing across a restart).
afterEach(async () => {
  await Promise.all(procs.splice(0).map((p) => p.stop('SIGKILL')))
  await redis?.restart()
})
afterAll(async () => {
  await redis?.stop()
  await rm(cache, { recursive: true, force: true })
})

async function server(port = 0, extra: string[] = []): Promise<{ proc: Proc; url: string }> {
  const proc = start(SERVER_BIN, ['--port', String(port), '--model', 'synthetic:tiny', ...extra], {
    BUTTERFLY_CACHE_DIR: cache,
    BUTTERFLY_REDIS_URL: aclUrl(redis.url, REDIS_PASSWORD),
    BUTTERFLY_CLUSTER_SECRET: 'redis-cluster test secret',
  })
  procs.push(proc)
  return { proc, url: (await proc.waitFor(/listening on (http:\/\/\S+)/))[1] as string }
}

function completionBody(maxTokens: number, stream: boolean): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: PROMPT, max_tokens: maxTokens, temperature: 0, stream }),
  }
}

const complete = (url: string, maxTokens: number) => completionText(url, PROMPT, maxTokens)
const reference = (maxTokens: number) =>
  referenceText('synthetic:tiny', PROMPT, maxTokens, { BUTTERFLY_CACHE_DIR: cache })

/** Streams a completion from `url`; `onFirst` runs once the first token has reached the client. */
async function streamed(url: string, maxTokens: number, onFirst: () => Promise<void>) {
  const res = await fetch(`${url}/v1/completions`, completionBody(maxTokens, true))
  expect(res.status).toBe(200)
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  const decoder = new TextDecoder()
  let raw = ''
  let first = true
  let tokensBeforeKill = -1
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    raw += decoder.decode(value, { stream: true })
    if (first && raw.includes('"text"')) {
      first = false
      await onFirst()
      tokensBeforeKill = raw.split('\n\n').filter((e) => e.includes('"text"')).length
    }
  }
  const events = raw.split('\n\n').filter((e) => e.startsWith('data: '))
  expect(events.at(-1)).toBe('data: [DONE]')
  const chunks = events
    .slice(0, -1)
    .map((e) => JSON.parse(e.slice(6)) as { choices?: Array<{ text?: string }> })
  const text = chunks.map((c) => c.choices?.map((x) => x.text ?? '').join('') ?? '').join('')
  return { text, chunks: chunks.length, tokensBeforeKill }
}

test('workers on server A serve server B; A killed mid-generation loses no token; A restarted plans nothing new', async () => {
  const a = await server()
  const b = await server()
  const worker = start(
    WORKER_BIN,
    ['join', '--server', `${a.url},${b.url}`, '--device', 'cpu', '--name', 'w', '--stage-cache', 'off'],
    { BUTTERFLY_CACHE_DIR: cache, BUTTERFLY_IDENTITY: join(cache, 'w.identity.json') },
  )
  procs.push(worker)
  const peerId = (await worker.waitFor(/joined mesh default as (\S+)/))[1] as string
  // B sees A's worker, its plan and its stage loaded, all through Redis.
  const onB = await until<Health>(`${b.url}/health`, (h) => h.meshes[0]?.ready === true)
  expect(onB.meshes[0]?.peers.map((p) => p.id)).toEqual([peerId])
  const plan = onB.meshes[0]?.plan
  expect(plan?.stages.map((s) => s.peerId)).toEqual([peerId])
  const short = await reference(12)
  expect(await complete(b.url, 12)).toBe(short)
  expect(await complete(a.url, 12)).toBe(short)

  // Long enough that the kill lands mid-stream (the test checks it did).
  const long = await reference(400)
  const run = await streamed(b.url, 400, async () => {
    await a.proc.stop('SIGKILL')
  })
  expect(run.text).toBe(long)
  expect(run.tokensBeforeKill).toBeGreaterThan(0)
  expect(run.tokensBeforeKill).toBeLessThan(run.chunks)

  await worker.waitFor(new RegExp(`rejoined the mesh through ${b.url.replace(/[.]/g, '\\.')}`))
  const after = await until<Health>(
    `${b.url}/health`,
    (h) => h.meshes[0]?.ready === true && h.meshes[0].peers.length === 1,
  )
  // The same identity under the same plan: nothing re-planned, nothing reloaded.
  expect(after.meshes[0]?.plan).toEqual(plan)
  expect(worker.output()).toMatch(/kept layers \[0, 4\) under the plan of http/)
  expect(worker.output().match(/serving layers/g)).toHaveLength(1)
  expect(await complete(b.url, 12)).toBe(short)

  const a2 = await server()
  const onA2 = await until<Health>(`${a2.url}/health`, (h) => h.meshes[0]?.ready === true)
  expect(onA2.meshes[0]?.plan).toEqual(plan)
  expect(await complete(a2.url, 12)).toBe(short)
  const bNow = (await (await fetch(`${b.url}/health`)).json()) as Health
  expect(bNow.meshes[0]?.plan.version).toBe(plan?.version)
  expect(worker.child.exitCode).toBeNull()
}, 180_000)

/** One greedy completion: its text, or the explicit error (status and code) it failed with. */
async function attempt(
  url: string,
  maxTokens: number,
): Promise<{ text: string } | { status: number; code: string }> {
  const res = await fetch(`${url}/v1/completions`, completionBody(maxTokens, false))
  const body = (await res.json()) as { choices?: Array<{ text: string }>; error?: { code: string } }
  if (res.status === 200) return { text: body.choices?.[0]?.text ?? '' }
  return { status: res.status, code: body.error?.code ?? '(none)' }
}

test('Redis restarted under traffic: every completion is exact or fails with a code; no peer is dropped; sync resumes', async () => {
  const a = await server()
  const b = await server()
  const worker = start(WORKER_BIN, ['join', '--server', a.url, '--device', 'cpu', '--name', 'r'], {
    BUTTERFLY_CACHE_DIR: cache,
    BUTTERFLY_IDENTITY: join(cache, 'r.identity.json'),
  })
  procs.push(worker)
  const peerId = (await worker.waitFor(/joined mesh default as (\S+)/))[1] as string
  const onB = await until<Health>(`${b.url}/health`, (h) => h.meshes[0]?.ready === true)
  const plan = onB.meshes[0]?.plan
  const short = await reference(12)

  // Two streams of requests, one per server, run until Redis has restarted and a round after.
  let restarted = false
  const results: Array<Awaited<ReturnType<typeof attempt>>> = []
  const traffic = async (url: string) => {
    let after = 0
    while (after < 3) {
      if (restarted) after++
      results.push(await attempt(url, 12))
    }
  }
  const running = Promise.all([traffic(a.url), traffic(b.url)])
  await redis.restart()
  restarted = true
  await running
  expect(results.length).toBeGreaterThanOrEqual(6)
  for (const r of results) {
    if ('text' in r) expect(r.text).toBe(short)
    else expect(r.code).toMatch(/^[a-z_]+$|^ERR_[A-Z0-9_]+$/)
  }
  const exact = results.filter((r) => 'text' in r).length
  expect(exact).toBeGreaterThan(0)

  // Both servers still list the worker under the plan they had, and Redis has it all again.
  for (const url of [a.url, b.url]) {
    const h = await until<Health>(`${url}/health`, (x) => x.meshes[0]?.ready === true)
    expect(h.meshes[0]?.peers.map((p) => p.id)).toEqual([peerId])
    expect(h.meshes[0]?.plan).toEqual(plan)
  }
  // A worker joining B after the restart is seen by A: the servers sync through the new Redis.
  const late = start(WORKER_BIN, ['join', '--server', b.url, '--device', 'cpu', '--name', 'late'], {
    BUTTERFLY_CACHE_DIR: cache,
    BUTTERFLY_IDENTITY: join(cache, 'late.identity.json'),
  })
  procs.push(late)
  const lateId = (await late.waitFor(/joined mesh default as (\S+)/))[1] as string
  await until<Health>(`${a.url}/health`, (h) => h.meshes[0]?.peers.some((p) => p.id === lateId) === true)
  expect(await complete(a.url, 12)).toBe(short)
  expect(await complete(b.url, 12)).toBe(short)
  expect(worker.output()).not.toMatch(/rejoined/)
  expect(worker.child.exitCode).toBeNull()
}, 180_000)

test('per-peer tokens: one issued on A admits its worker through B, and A serves exact completions through it', async () => {
  const admin = 'redis-cluster-admin'
  const flags = ['--admin-token', admin, '--require-peer-tokens']
  const a = await server(0, flags)
  const b = await server(0, flags)
  const res = await fetch(`${a.url}/admin/join-tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ mesh: 'default', label: 'through-b' }),
  })
  expect(res.status).toBe(201)
  const { id, token } = (await res.json()) as { id: string; token: string }
  // B takes the token in at its next sync (every second); a join before that would be refused.
  const tokensOf = async (url: string) => {
    const r = await fetch(`${url}/admin/join-tokens`, { headers: { authorization: `Bearer ${admin}` } })
    return ((await r.json()) as { tokens: Array<{ id: string; boundPeerId: string | null }> }).tokens
  }
  await vi.waitFor(async () => expect((await tokensOf(b.url)).map((t) => t.id)).toContain(id), {
    timeout: 10_000,
    interval: 50,
  })
  const worker = start(WORKER_BIN, ['join', '--server', b.url, '--device', 'cpu', '--token', token], {
    BUTTERFLY_CACHE_DIR: cache,
    BUTTERFLY_IDENTITY: join(cache, 't.identity.json'),
  })
  procs.push(worker)
  const peerId = (await worker.waitFor(/joined mesh default as (\S+)/))[1] as string
  await until<Health>(`${a.url}/health`, (h) => h.meshes[0]?.ready === true)
  expect(await complete(a.url, 12)).toBe(await reference(12))
  // The binding made on B is A's too.
  await vi.waitFor(
    async () => expect((await tokensOf(a.url)).find((t) => t.id === id)?.boundPeerId).toBe(peerId),
    { timeout: 10_000, interval: 50 },
  )
}, 120_000)
