import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Proc, SERVER_BIN, start, until, WORKER_BIN } from '@butterfly/testing/node'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { chatPrompt } from '../src/api/openai-request.js'

// Real processes on loopback: one server, three workers over real WebRTC, the official
// openai client as the caller, and the single-process CLI as the reference.
interface Health {
  meshes: Array<{
    ready: boolean
    tokensGenerated: number
    links: Array<{ peerId: string; rttMs: number; samples: number }>
    plan: { version: number; stages: Array<{ peerId: string; start: number; end: number }> }
  }>
}

const MESSAGES = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'To be, or not to be?' },
]
const MAX_TOKENS = 24

let cache: string
let server: Proc
let url: string
let client: OpenAI
let modelId: string
const workers: Proc[] = []
let reference: string
let referenceCompletion: string

function worker(name: string, extra: readonly string[] = []): Proc {
  const w = start(
    WORKER_BIN,
    ['join', '--server', url, '--device', 'cpu', '--name', name, '--memory', '1GB', ...extra],
    {
      BUTTERFLY_CACHE_DIR: cache,
      // One identity per worker: a key can be in a mesh only once.
      BUTTERFLY_IDENTITY: join(cache, `${name}.identity.json`),
    },
  )
  workers.push(w)
  return w
}

async function cliGenerate(prompt: string): Promise<string> {
  const p = start(
    WORKER_BIN,
    ['generate', '--model', 'synthetic:tiny', '--prompt', prompt, '--max-tokens', String(MAX_TOKENS)],
    {
      BUTTERFLY_CACHE_DIR: cache,
    },
  )
  expect(await p.exited).toBe(0)
  return p.output().replace(/\n$/, '')
}

const readyWith = (stages: number) => (h: Health) =>
  h.meshes[0]?.ready === true && h.meshes[0].plan.stages.length === stages

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'bf-mesh-'))
  server = start(
    SERVER_BIN,
    ['--port', '0', '--model', 'synthetic:tiny', '--plan-strategy', 'uniform', '--relay', 'chain'],
    {
      BUTTERFLY_CACHE_DIR: cache,
    },
  )
  url = (await server.waitFor(/listening on (http:\/\/\S+)/))[1] as string
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 })
  for (const name of ['w1', 'w2', 'w3']) worker(name)
  ;[reference, referenceCompletion] = await Promise.all([
    cliGenerate(chatPrompt(MESSAGES)),
    cliGenerate('Once upon a time'),
  ])
  await until<Health>(`${url}/health`, readyWith(3))
  modelId = (await client.models.list()).data[0]?.id ?? ''
}, 120_000)

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()))
  await server?.stop()
  await rm(cache, { recursive: true, force: true })
})

async function chat(): Promise<string> {
  const res = await client.chat.completions.create({
    model: modelId,
    messages: MESSAGES,
    max_tokens: MAX_TOKENS,
    temperature: 0,
  })
  expect(res.usage?.completion_tokens).toBe(MAX_TOKENS)
  return res.choices[0]?.message.content ?? ''
}

async function chatStream(): Promise<string> {
  const stream = await client.chat.completions.create({
    model: modelId,
    messages: MESSAGES,
    max_tokens: MAX_TOKENS,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  })
  let text = ''
  let usage: number | undefined
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? ''
    if (chunk.usage) usage = chunk.usage.completion_tokens
  }
  expect(usage).toBe(MAX_TOKENS)
  return text
}

describe('mesh of three workers over WebRTC', () => {
  test('the plan splits the model across all three workers', async () => {
    const health = await until<Health>(`${url}/health`, readyWith(3))
    const stages = health.meshes[0]?.plan.stages ?? []
    expect(new Set(stages.map((s) => s.peerId)).size).toBe(3)
    expect(stages.map((s) => [s.start, s.end])).toEqual([
      [0, 2],
      [2, 3],
      [3, 4],
    ])
  })

  test('chat completions, plain and streamed, give exactly the single-process tokens', async () => {
    expect(reference.length).toBeGreaterThan(0)
    expect(await chat()).toBe(reference)
    expect(await chatStream()).toBe(reference)
  })

  test('/health counts generated tokens and reports a round-trip time for every link', async () => {
    const before = (await until<Health>(`${url}/health`, readyWith(3))).meshes[0]?.tokensGenerated ?? -1
    expect(await chat()).toBe(reference)
    const health = await until<Health>(`${url}/health`, (h) => (h.meshes[0]?.links.length ?? 0) === 3)
    const mesh = health.meshes[0]
    expect(mesh?.tokensGenerated).toBe(before + MAX_TOKENS)
    expect(new Set(mesh?.links.map((l) => l.peerId))).toEqual(new Set(mesh?.plan.stages.map((s) => s.peerId)))
    for (const link of mesh?.links ?? []) {
      expect(link.samples).toBeGreaterThan(0)
      // Loopback WebRTC: well under a second, and never zero or negative.
      expect(link.rttMs).toBeGreaterThan(0)
      expect(link.rttMs).toBeLessThan(1000)
    }
  })

  test('hidden states hop worker to worker: the gateway times one chained stage, no stage alone', async () => {
    expect(await chat()).toBe(reference)
    const text = await (await fetch(`${url}/metrics`)).text()
    const chained = text.match(/butterfly_stage_step_seconds_count\{mesh="default",stage="chain"\} (\d+)/)
    expect(Number(chained?.[1] ?? 0)).toBeGreaterThanOrEqual(MAX_TOKENS)
    expect(text).not.toMatch(/butterfly_stage_step_seconds_count\{mesh="default",stage="0"\}/)
  })

  test('completions give exactly the single-process tokens', async () => {
    const res = await client.completions.create({
      model: modelId,
      prompt: 'Once upon a time',
      max_tokens: MAX_TOKENS,
      temperature: 0,
    })
    expect(res.choices[0]?.text).toBe(referenceCompletion)
  })

  test('concurrent generations do not disturb each other', async () => {
    const results = await Promise.all([chat(), chatStream(), chat(), chatStream()])
    for (const r of results) expect(r).toBe(reference)
  })

  test('a worker leaving re-plans, and later generations still match', async () => {
    const before = await until<Health>(`${url}/health`, readyWith(3))
    const leaving = workers.pop() as Proc
    expect(await leaving.stop('SIGTERM')).toBe(0)
    const after = await until<Health>(
      `${url}/health`,
      (h) => readyWith(2)(h) && (h.meshes[0]?.plan.version ?? 0) > (before.meshes[0]?.plan.version ?? 0),
    )
    expect(after.meshes[0]?.plan.stages).toHaveLength(2)
    expect(await chat()).toBe(reference)
  })

  test('a worker joining re-plans, and later generations still match', async () => {
    // Its engine flags (one thread, batches of two, 4-position prompt chunks) never change text.
    worker('w4', ['--threads', '1', '--max-batch', '2', '--prefill-chunk', '4'])
    await until<Health>(`${url}/health`, readyWith(3))
    expect(await chatStream()).toBe(reference)
    const results = await Promise.all([chat(), chatStream(), chat()])
    for (const r of results) expect(r).toBe(reference)
  })
})

describe('identity', () => {
  test('a second worker with an identity already in the mesh is refused and exits', async () => {
    const twin = start(WORKER_BIN, ['join', '--server', url, '--device', 'cpu', '--name', 'twin'], {
      BUTTERFLY_CACHE_DIR: cache,
      BUTTERFLY_IDENTITY: join(cache, 'w1.identity.json'),
    })
    expect(await twin.exited).toBe(1)
    expect(twin.output()).toMatch(/error \[ERR_CONTROL_INPUT\]: .*identity already connected/)
    await until<Health>(`${url}/health`, readyWith(3))
  })
})

describe('bad API input', () => {
  const cases: Array<[string, unknown, number, string]> = [
    ['missing messages', { model: 'x' }, 400, 'messages'],
    ['empty messages', { model: 'x', messages: [] }, 400, 'messages'],
    [
      'negative max_tokens',
      { model: 'x', messages: [{ role: 'user', content: 'hi' }], max_tokens: -1 },
      400,
      'max_tokens',
    ],
    [
      'absurd max_tokens',
      { model: 'x', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1e12 },
      400,
      'max_tokens',
    ],
    [
      'wrong type of temperature',
      { model: 'x', messages: [{ role: 'user', content: 'hi' }], temperature: 'hot' },
      400,
      'temperature',
    ],
    ['wrong role', { model: 'x', messages: [{ role: 'wizard', content: 'hi' }] }, 400, 'messages[0].role'],
    [
      'content not a string',
      { model: 'x', messages: [{ role: 'user', content: 42 }] },
      400,
      'messages[0].content',
    ],
    ['n other than 1', { model: 'x', messages: [{ role: 'user', content: 'hi' }], n: 3 }, 400, 'n'],
    [
      'huge prompt',
      { model: 'x', messages: [{ role: 'user', content: 'x'.repeat(300_000) }] },
      400,
      'messages',
    ],
    ['not an object', [1, 2, 3], 400, 'body'],
  ]
  test.each(cases)('%s → %i with an OpenAI-style error', async (_, body, status, param) => {
    const real = { ...(Array.isArray(body) ? {} : (body as object)), model: modelId }
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(Array.isArray(body) ? body : real),
    })
    expect(res.status).toBe(status)
    const err = (await res.json()) as { error: { message: string; type: string; param: string } }
    expect(err.error.type).toBe('invalid_request_error')
    expect(err.error.param).toBe(param)
    expect(err.error.message.length).toBeGreaterThan(0)
  })

  test('malformed JSON is a 400, an unknown model a 404, and the server keeps serving', async () => {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"model": ',
    })
    expect(res.status).toBe(400)
    const unknown = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(unknown.status).toBe(404)
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('model_not_found')
    expect(await chat()).toBe(reference)
  })
})
