import { generateIdentity } from '@butterfly/core'
import { createNodeBackend, nodeWrtc, startWorkerNode, type WorkerNode } from '@butterfly/node-platform'
import { until } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { attachGateway, type Gateway } from '../src/api/attach-gateway.js'
import type { Admission } from '../src/gateway/admission.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer, tinyModel } from './helpers.js'

// Fair admission through the real API: an in-process server with one real worker (socket.io and
// WebRTC on loopback), one generation at a time, clients told apart by their bearer tokens.
vi.setConfig({ testTimeout: 30_000 })

const MAX_QUEUE_WAIT_MS = 4000
let server: SignalServer
let gateway: Gateway
let admission: Admission
let worker: WorkerNode | undefined
let cleanup: () => Promise<void>

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string }
}

function post(key: string, maxTokens = 2): Promise<Response> {
  return fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({
      model: 'default',
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: maxTokens,
      temperature: 0,
    }),
  })
}

/** A 429's Retry-After: a whole number of seconds within 1..60. */
function retryAfter(res: Response): number {
  const header = res.headers.get('retry-after') ?? ''
  expect(header).toMatch(/^\d+$/)
  const seconds = Number(header)
  expect(seconds).toBeGreaterThanOrEqual(1)
  expect(seconds).toBeLessThanOrEqual(60)
  return seconds
}

beforeAll(async () => {
  const model = await tinyModel()
  cleanup = model.cleanup
  server = await startServer({
    meshes: [{ name: 'default', modelDir: model.dir }],
    extend: async (parts) => {
      gateway = await attachGateway(
        parts,
        {
          maxConcurrent: 1,
          maxQueued: 8,
          maxQueuedPerKey: 3,
          maxQueueWaitMs: MAX_QUEUE_WAIT_MS,
          planWaitMs: 5000,
        },
        { wrtc: nodeWrtc() },
      )
    },
  })
  const served = gateway.find('default')
  if (served === undefined) throw new Error('the gateway serves no mesh "default"')
  admission = served.admission
  worker = await startWorkerNode(
    {
      serverUrl: server.url,
      mesh: 'default',
      token: '',
      name: 'w1',
      memoryBytes: 2 ** 30,
      backendName: 'cpu',
    },
    { backend: createNodeBackend(), wrtc: nodeWrtc(), identity: generateIdentity() },
  )
  await until<{ meshes: Array<{ ready: boolean }> }>(
    `${server.url}/health`,
    (h) => h.meshes[0]?.ready === true,
  )
  // One generation end to end: the pipeline is connected before anything queues behind it.
  expect((await post('warm-up')).status).toBe(200)
})

afterAll(async () => {
  await worker?.stop()
  await server?.close()
  await cleanup?.()
})

describe('fair admission over HTTP', () => {
  test("a flood from key A delays key B's request by one of A's at most; A alone is refused past its cap", async () => {
    // The test holds the only slot, standing in for a long generation, while the queue fills.
    const hold = await admission.acquire('test-holder')
    const order: string[] = []
    const done: Array<Promise<void>> = []
    const send = (key: string, label: string) => {
      done.push(
        post(key).then(async (res) => {
          expect(res.status).toBe(200)
          await res.json()
          order.push(label)
        }),
      )
    }
    for (const n of [1, 2, 3]) send('key-A', `A${n}`)
    await vi.waitFor(() => expect(admission.queued).toBe(3))
    // A's fourth waiting request is past --max-queued-per-key: 429 for A, while the queue has room.
    const refused = await post('key-A')
    expect(refused.status).toBe(429)
    retryAfter(refused)
    const body = (await refused.json()) as ErrorBody
    expect(body.error).toMatchObject({ type: 'rate_limit_error', code: 'queue_full', param: null })
    expect(body.error.message).toMatch(/this client already has 3/)
    send('key-B', 'B1')
    await vi.waitFor(() => expect(admission.queued).toBe(4))
    hold()
    await Promise.all(done)
    // First in FIFO order B would be last (index 3); served in turn it follows one of A's.
    expect(order.indexOf('B1')).toBeLessThanOrEqual(1)
    expect(order.filter((l) => l.startsWith('A'))).toEqual(['A1', 'A2', 'A3'])
    expect(admission.queued).toBe(0)
  })

  test('a request that cannot start within --max-queue-wait gets 429 queue_timeout with Retry-After', async () => {
    const hold = await admission.acquire('test-holder')
    try {
      // Refused at once when the measured service time already predicts too long a wait,
      // else dropped at the deadline: either way the same answer.
      const res = await post('key-C')
      expect(res.status).toBe(429)
      retryAfter(res)
      const body = (await res.json()) as ErrorBody
      expect(body.error).toMatchObject({ type: 'rate_limit_error', code: 'queue_timeout', param: null })
      expect(body.error.message).toMatch(/the mesh is busy/)
      expect(admission.queued).toBe(0)
    } finally {
      hold()
    }
    // The slot is free again: the next request is served.
    expect((await post('key-C')).status).toBe(200)
  })

  test('/metrics counts both refusals and shows the queue empty again', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text()
    expect(text).toMatch(/butterfly_generations_rejected_total\{mesh="default",reason="queue_full"\} 1\n/)
    expect(text).toMatch(/butterfly_generations_rejected_total\{mesh="default",reason="queue_timeout"\} 1\n/)
    expect(text).toMatch(/butterfly_generations_queued\{mesh="default"\} 0\n/)
    expect(text).toMatch(/butterfly_generations_running\{mesh="default"\} 0\n/)
  })
})
