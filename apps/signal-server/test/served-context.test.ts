import { generateIdentity, stageMemoryBytes } from '@butterfly/core'
import { createNodeBackend, nodeWrtc, startWorkerNode, type WorkerNode } from '@butterfly/node-platform'
import { until } from '@butterfly/testing/node'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { attachGateway } from '../src/api/attach-gateway.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer, tinyModel } from './helpers.js'

// The served context (`butterfly-server --context`): the model's max_position_embeddings (512
// for synthetic:tiny) is capped, so placement sizes KV caches for the cap and the API admits
// no more. A worker whose memory fits the capped stage but not the full-context one is given
// the whole model only because of the cap.
const CONTEXT = 32
let server: SignalServer
let cleanup: () => Promise<void>
let worker: WorkerNode | undefined

const complete = (prompt: string, maxTokens: number) =>
  fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: maxTokens, temperature: 0 }),
  })

beforeAll(async () => {
  const model = await tinyModel()
  cleanup = model.cleanup
  server = await startServer({
    meshes: [{ name: 'default', modelDir: model.dir }],
    maxContext: CONTEXT,
    extend: (parts) => attachGateway(parts, { planWaitMs: 5000 }, { wrtc: nodeWrtc() }).then(() => undefined),
  })
  const mesh = server.meshes.get('default')
  if (mesh === undefined) throw new Error('no mesh')
  const full = { ...mesh.config, maxContext: 512 }
  const capped = stageMemoryBytes(mesh.config, 0, mesh.config.numLayers)
  // Between the two: only the capped reservation fits.
  const memoryBytes = Math.floor((capped + stageMemoryBytes(full, 0, full.numLayers)) / 2)
  worker = await startWorkerNode(
    {
      serverUrl: server.url,
      mesh: 'default',
      token: '',
      name: 'w',
      memoryBytes,
      backendName: 'cpu',
      weights: 'fp32',
    },
    { backend: createNodeBackend(), wrtc: nodeWrtc(), identity: generateIdentity() },
  )
  await until<{ meshes: Array<{ ready: boolean }> }>(
    `${server.url}/health`,
    (h) => h.meshes[0]?.ready === true,
  )
}, 60_000)

afterAll(async () => {
  await worker?.stop()
  await server?.close()
  await cleanup?.()
})

test('the mesh serves the capped context: placement fits it, the API admits no more', async () => {
  expect(server.meshes.get('default')?.config.maxContext).toBe(CONTEXT)
  // The byte tokenizer: one token per byte, plus BOS.
  const tooLong = await complete('x'.repeat(CONTEXT), 4)
  expect(tooLong.status).toBe(400)
  const err = (await tooLong.json()) as { error: { code: string; message: string } }
  expect(err.error.code).toBe('context_length_exceeded')
  expect(err.error.message).toContain(`context is ${CONTEXT}`)
  // 1 BOS + 27 bytes leaves 4 tokens of room, whatever max_tokens asks for.
  const fits = await complete('y'.repeat(CONTEXT - 5), 100)
  expect(fits.status).toBe(200)
  const body = (await fits.json()) as { usage: { prompt_tokens: number; completion_tokens: number } }
  expect(body.usage.prompt_tokens).toBe(CONTEXT - 4)
  expect(body.usage.completion_tokens).toBeLessThanOrEqual(4)
})
