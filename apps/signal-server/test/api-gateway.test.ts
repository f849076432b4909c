import { generateIdentity } from '@butterfly/core'
import { createNodeBackend, nodeWrtc, startWorkerNode, type WorkerNode } from '@butterfly/node-platform'
import { until } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { attachGateway } from '../src/api/attach-gateway.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer, tinyModel } from './helpers.js'

// The gateway in-process with a real worker node (socket.io + WebRTC on loopback): admission,
// auth, no-plan and metrics behaviour, which the multi-process suite does not cover.
const TOKEN = 'sesame'
let server: SignalServer
let cleanup: () => Promise<void>
let worker: WorkerNode | undefined
/** Everything the server logged at error level or above. */
const errors: string[] = []

const chatBody = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    model: 'default',
    messages: [{ role: 'user', content: 'hello' }],
    max_tokens: 4,
    temperature: 0,
    ...extra,
  })

function post(
  body: string,
  headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` },
  signal?: AbortSignal,
) {
  return fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
    ...(signal ? { signal } : {}),
  })
}

beforeAll(async () => {
  const model = await tinyModel()
  cleanup = model.cleanup
  server = await startServer({
    meshes: [{ name: 'default', modelDir: model.dir }],
    logger: { level: 'error', stream: { write: (line: string) => void errors.push(line) } },
    extend: (parts) =>
      attachGateway(
        parts,
        { apiToken: TOKEN, maxConcurrent: 1, maxQueued: 0, planWaitMs: 2000 },
        { wrtc: nodeWrtc() },
      ).then(() => undefined),
  })
})

afterAll(async () => {
  await worker?.stop()
  await server?.close()
  await cleanup?.()
})

describe('gateway API', () => {
  test('attaching the gateway logs no control-plane error', () => {
    // The gateway's local peer is handed the current plan during its construction.
    expect(server.url).toMatch(/^http:/)
    expect(errors).toEqual([])
  })

  test('without a bearer token the API answers 401', async () => {
    const res = await post(chatBody(), {})
    expect(res.status).toBe(401)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key')
    expect((await post(chatBody(), { authorization: 'Bearer wrong' })).status).toBe(401)
  })

  test('with no worker in the mesh a generation fails fast with 503 and a reason', async () => {
    const started = Date.now()
    const res = await post(chatBody())
    expect(res.status).toBe(503)
    const body = (await res.json()) as { error: { code: string; message: string; type: string } }
    expect(body.error.code).toBe('no_plan')
    expect(body.error.type).toBe('server_error')
    expect(body.error.message).toMatch(/cannot serve/)
    expect(Date.now() - started).toBeLessThan(1500)
  })

  test('once a worker joins, requests are served', async () => {
    worker = await startWorkerNode(
      {
        serverUrl: server.url,
        mesh: 'default',
        token: '',
        name: 'w1',
        memoryBytes: 2 ** 30,
        backendName: 'cpu',
      },
      // A fresh identity: the default one lives in the user's home directory.
      { backend: createNodeBackend(), wrtc: nodeWrtc(), identity: generateIdentity() },
    )
    await until<{ meshes: Array<{ ready: boolean }> }>(
      `${server.url}/health`,
      (h) => h.meshes[0]?.ready === true,
    )
    const res = await post(chatBody())
    expect(res.status).toBe(200)
    const body = (await res.json()) as {
      usage: { completion_tokens: number }
      choices: Array<{ finish_reason: string }>
    }
    expect(body.usage.completion_tokens).toBe(4)
    expect(body.choices[0]?.finish_reason).toBe('length')
  })

  test('a full queue answers 429 with Retry-After, and frees up when the running generation ends', async () => {
    const abort = new AbortController()
    const running = await post(chatBody({ stream: true, max_tokens: 400 }), undefined, abort.signal)
    expect(running.status).toBe(200)
    const reader = (running.body as ReadableStream<Uint8Array>).getReader()
    await reader.read() // the generation is admitted and streaming
    const rejected = await post(chatBody())
    expect(rejected.status).toBe(429)
    expect(Number(rejected.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(((await rejected.json()) as { error: { type: string } }).error.type).toBe('rate_limit_error')
    abort.abort()
    await reader.cancel().catch(() => undefined)
    // The client went away: the generation is cancelled and its slot released.
    const after = await until<{ meshes: unknown[] }>(`${server.url}/health`, () => true)
    expect(after.meshes).toHaveLength(1)
    let status = 429
    for (let i = 0; i < 100 && status === 429; i++) {
      status = (await post(chatBody())).status
      if (status === 429) await new Promise((r) => setTimeout(r, 50))
    }
    expect(status).toBe(200)
  })

  test('/metrics reports tokens, request latency, stage steps and bytes', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text()
    expect(text).toMatch(/butterfly_tokens_total\{mesh="default",kind="completion"\} \d+/)
    expect(text).toMatch(
      /butterfly_request_duration_seconds_count\{route="\/v1\/chat\/completions",status="200"\} \d+/,
    )
    expect(text).toMatch(/butterfly_stage_step_seconds_count\{mesh="default",stage="0"\} \d+/)
    expect(text).toMatch(/butterfly_bytes_sent_total\{mesh="default"\} \d+/)
    expect(text).toMatch(/butterfly_generations_rejected_total\{mesh="default",reason="queue_full"\} 1/)
  })
})
