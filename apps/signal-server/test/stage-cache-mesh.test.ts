import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nodeWrtc, resolveModelDir } from '@butterfly/node-platform'
import { type Proc, start, WORKER_BIN } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { attachGateway, type Gateway } from '../src/api/attach-gateway.js'
import type { MeshGateway } from '../src/gateway/mesh-gateway.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer } from './helpers.js'
import { meshTokens, readyPlan, referenceTokens } from './mesh-harness.js'

// A `butterfly-worker join` process with a stage cache, restarted: the second process opens its
// stage from the cache (it says so, and fetches no weights: the server's model files are not
// read again) and serves the same greedy tokens as the single-process reference. Real processes,
// real WebRTC.

const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const TOKENS = 16
let cache: string
let modelDir: string
let server: SignalServer
let gateway: Gateway | undefined
let proc: Proc | undefined
let fileRequests = 0

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'bf-stage-cache-mesh-'))
  modelDir = await resolveModelDir('synthetic:small', cache)
  server = await startServer({
    meshes: [{ name: 'default', modelDir }],
    planOptions: { strategy: 'uniform' },
    extend: async (parts) => {
      gateway = await attachGateway(parts, {}, { wrtc: nodeWrtc() })
    },
  })
  // Weights are range reads of the model's safetensors; config and manifest are JSON.
  server.app.server.on('request', (req: { url?: string }) => {
    if (req.url?.startsWith('/models/') && req.url.includes('.safetensors')) fileRequests++
  })
}, 120_000)

afterAll(async () => {
  await proc?.stop()
  await server?.close()
  await rm(cache, { recursive: true, force: true })
})

const join1 = () =>
  start(
    WORKER_BIN,
    ['join', '--server', server.url, '--device', 'cpu', '--name', 'cached', '--threads', '1'],
    { BUTTERFLY_IDENTITY: join(cache, 'identity.json'), BUTTERFLY_CACHE_DIR: cache },
    ['--stage-cache', join(cache, 'stages')],
  )

describe('a worker restarted with a stage cache', () => {
  test('opens its stage from the cache without fetching weights and serves the reference tokens', async () => {
    const mesh = server.meshes.get('default')
    if (!mesh) throw new Error('no mesh')
    const reference = await referenceTokens(modelDir, PROMPT, TOKENS)

    proc = join1()
    await proc.waitFor(/serving layers \[0, \d+\) of \S+ \(downloaded and loaded in/, 120_000)
    await readyPlan(mesh, (plan) => plan.stages.length === 1)
    const served = gateway?.find('default') as MeshGateway
    expect(await meshTokens(served, PROMPT, TOKENS)).toEqual(reference)
    const fetched = fileRequests
    expect(fetched).toBeGreaterThan(0)
    expect((await readdir(join(cache, 'stages'))).filter((n) => /^[0-9a-f]{64}$/.test(n))).toHaveLength(1)
    expect(await proc.stop()).toBe(0)

    proc = join1()
    await proc.waitFor(/serving layers \[0, \d+\) of \S+ \(opened from the stage cache in/, 120_000)
    await readyPlan(mesh, (plan) => plan.stages.length === 1)
    expect(await meshTokens(served, PROMPT, TOKENS)).toEqual(reference)
    expect(fileRequests).toBe(fetched)
  })
})
