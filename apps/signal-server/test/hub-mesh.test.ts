import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type ModelManifest, stageTensorNames, syntheticConfig } from '@butterfly/core'
import { resolveModelDir } from '@butterfly/node-platform'
import {
  filesOf,
  type Proc,
  SERVER_BIN,
  shardName,
  start,
  startTestHub,
  type TestHub,
  until,
  WORKER_BIN,
  writeShardedModel,
} from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type CountingProxy, startCountingProxy } from './counting-proxy.js'

// `butterfly-server --model hf:org/sharded` against the local test hub, with two
// `butterfly-worker join` processes, each behind its own counting proxy so what each one
// downloads is measured from outside it. The server fetches every shard once (checked against
// the hub's sha256) and serves per-tensor hashes; each worker fetches only its own tensors.
interface Health {
  meshes: Array<{
    ready: boolean
    modelId: string
    plan: { stages: Array<{ peerId: string; start: number; end: number }> }
  }>
}

const config = syntheticConfig('tiny')
const SHARDS = [shardName(0, 2), shardName(1, 2)]
const PROMPT = 'Once upon a time'
const MAX_TOKENS = 16
// Room for two of the four layers but not three, so no worker is ever planned the whole model
// (stageMemoryBytes of tiny: 2 layers ≈ 67.80 MB, 3 layers ≈ 68.11 MB).
const WORKER_MEMORY = '67900000'

let work: string
let singleDir: string
let hub: TestHub
let server: Proc
let url: string
const proxies: CountingProxy[] = []
const workers: Array<{ proc: Proc; peerId: string }> = []

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bf-hub-mesh-'))
  singleDir = await resolveModelDir('synthetic:tiny', join(work, 'src'))
  const shardedDir = join(work, 'sharded')
  await writeShardedModel(config, singleDir, shardedDir)
  hub = await startTestHub()
  hub.addRepo('org/sharded', await filesOf(shardedDir))
  server = start(SERVER_BIN, ['--port', '0', '--model', 'hf:org/sharded', '--plan-strategy', 'uniform'], {
    BUTTERFLY_CACHE_DIR: join(work, 'server-cache'),
    HF_ENDPOINT: hub.url,
  })
  url = (await server.waitFor(/listening on (http:\/\/\S+)/, 120_000))[1] as string
  for (const name of ['w1', 'w2']) {
    const proxy = await startCountingProxy(url)
    proxies.push(proxy)
    const proc = start(
      WORKER_BIN,
      ['join', '--server', proxy.url, '--device', 'cpu', '--name', name, '--memory', WORKER_MEMORY],
      {
        BUTTERFLY_CACHE_DIR: join(work, `${name}-cache`),
        BUTTERFLY_IDENTITY: join(work, `${name}.identity.json`),
        // Workers never talk to the hub: a dead endpoint proves it.
        HF_ENDPOINT: 'http://127.0.0.1:9',
      },
    )
    const [, peerId] = await proc.waitFor(/joined mesh default as (\S+)/, 120_000)
    workers.push({ proc, peerId: peerId as string })
  }
  await until<Health>(
    `${url}/health`,
    (h) => h.meshes[0]?.ready === true && h.meshes[0].plan.stages.length === 2,
  )
}, 240_000)

afterAll(async () => {
  await Promise.all(workers.map((w) => w.proc.stop()))
  await server?.stop()
  await Promise.all(proxies.map((p) => p.close()))
  await hub?.close()
  await rm(work, { recursive: true, force: true })
})

describe('butterfly-server --model hf:org/sharded with two workers', () => {
  test('the server fetched each shard from the hub exactly once, whole', async () => {
    for (const shard of SHARDS) {
      const size = (await stat(join(work, 'sharded', shard))).size
      const gets = hub.requests.filter((r) => r.file === shard && r.status !== 302)
      expect(
        gets.map((r) => r.bytes),
        shard,
      ).toEqual([size])
    }
  })

  test('completions give exactly the tokens of the model run from a local directory', async () => {
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: Array<{ id: string }> }
    expect(models.data.map((m) => m.id)).toEqual(['org/sharded'])
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'org/sharded', prompt: PROMPT, max_tokens: MAX_TOKENS, temperature: 0 }),
    })
    expect(res.status).toBe(200)
    const text = ((await res.json()) as { choices: Array<{ text: string }> }).choices[0]?.text
    const local = start(WORKER_BIN, [
      'generate',
      '--model',
      singleDir,
      '--prompt',
      PROMPT,
      '--max-tokens',
      String(MAX_TOKENS),
    ])
    expect(await local.exited).toBe(0)
    expect(text).toBe(local.output().replace(/\n$/, ''))
    expect(text?.length).toBeGreaterThan(0)
  })

  test('each worker downloaded exactly the tensors of its own layers, and nothing else', async () => {
    const manifest = (await (await fetch(`${url}/models/default/manifest.json`)).json()) as ModelManifest
    const health = (await (await fetch(`${url}/health`)).json()) as Health
    const stages = health.meshes[0]?.plan.stages ?? []
    const totalShardBytes = SHARDS.reduce((sum, f) => sum + (manifest.files[f]?.size ?? 0), 0)
    const ranges = new Map<number, string[]>()
    for (const [i, { peerId }] of workers.entries()) {
      const stage = stages.find((s) => s.peerId === peerId)
      expect(stage, `worker ${i} has a stage`).toBeDefined()
      const { start: a, end: b } = stage as { start: number; end: number }
      const expected = stageTensorNames(config, a, b).map((n) => {
        const t = manifest.tensors[n] as { file: string; begin: number; end: number }
        return `${t.file} bytes=${t.begin}-${t.end - 1}`
      })
      const fetched = (proxies[i] as CountingProxy).requests.filter(
        (r) => r.method === 'GET' && /^\/models\/default\/model-\d+-of-\d+\.safetensors$/.test(r.path),
      )
      // Each shard touched costs two small header reads: the 8-byte length, then the JSON header.
      const isHeader = (r: { range: string | undefined }) =>
        r.range === 'bytes=0-7' || /^bytes=8-/.test(r.range ?? '')
      const tensorReads = fetched.filter((r) => !isHeader(r))
      expect(tensorReads.map((r) => `${r.path.split('/').at(-1)} ${r.range}`).sort(), `worker ${i}`).toEqual(
        [...expected].sort(),
      )
      const tensorBytes = tensorReads.reduce((sum, r) => sum + r.bytes, 0)
      const headerBytes = fetched.filter(isHeader).reduce((sum, r) => sum + r.bytes, 0)
      const stageBytes = stageTensorNames(config, a, b).reduce((sum, n) => {
        const t = manifest.tensors[n] as { begin: number; end: number }
        return sum + t.end - t.begin
      }, 0)
      expect(tensorBytes).toBe(stageBytes)
      expect(headerBytes).toBeLessThan(4096)
      expect(tensorBytes + headerBytes).toBeLessThan(0.75 * totalShardBytes)
      ranges.set(a, expected)
    }
    // Stage 0 (embeddings, layers 0-1) lives in the first shard alone; the last stage reads its
    // layers and norm from the second and, the head being tied, the embeddings from the first.
    expect(new Set(ranges.get(0)?.map((r) => r.split(' ')[0]))).toEqual(new Set([SHARDS[0]]))
    expect(new Set(ranges.get(2)?.map((r) => r.split(' ')[0]))).toEqual(new Set(SHARDS))
  })

  test('a second server on the same cache downloads nothing', async () => {
    const since = hub.requests.length
    const again = start(SERVER_BIN, ['--port', '0', '--model', 'hf:org/sharded', '--mesh', 'other'], {
      BUTTERFLY_CACHE_DIR: join(work, 'server-cache'),
      HF_ENDPOINT: hub.url,
    })
    try {
      await again.waitFor(/listening on/, 60_000)
    } finally {
      await again.stop()
    }
    expect(hub.requests.slice(since).map((r) => r.url)).toEqual(['/api/models/org/sharded/revision/main'])
  })
})
