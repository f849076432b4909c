import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { HiddenDtype } from '@butterfly/core'
import { nodeWrtc, type WorkerNode } from '@butterfly/node-platform'
import { type Proc, SERVER_BIN, start, until, WORKER_BIN } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { attachGateway, type Gateway } from '../src/api/attach-gateway.js'
import type { MeshGateway } from '../src/gateway/mesh-gateway.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer, tinyModel } from './helpers.js'
import { meshTokens, readyPlan, referenceTokens, startLocalWorker } from './mesh-harness.js'

// A mesh of two stages of synthetic:tiny (hidden 64) whose gateway sends hidden states as fp16:
// in process, the tokens and the bytes saved against an fp32 mesh; as real processes, the server's
// --wire-dtype flag end to end, the completion text equal to the single-process fp32 reference.

const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const TOKENS = 24
const HIDDEN = 64
let modelDir: string
let cleanup: () => Promise<void>

beforeAll(async () => {
  ;({ dir: modelDir, cleanup } = await tinyModel())
})
afterAll(async () => cleanup?.())

/** Tokens and gateway wire bytes of one generation on a fresh 2-worker, 2-stage mesh. */
async function run(
  dtype: HiddenDtype,
  relay: 'chain' | 'coordinator' = 'coordinator',
): Promise<{ tokens: number[]; bytes: number }> {
  let gateway: Gateway | undefined
  const server: SignalServer = await startServer({
    meshes: [{ name: 'default', modelDir }],
    planOptions: { strategy: 'uniform' },
    extend: async (parts) => {
      gateway = await attachGateway(parts, { wireDtype: dtype, relay }, { wrtc: nodeWrtc() })
    },
  })
  const workers: WorkerNode[] = []
  try {
    for (const name of ['w1', 'w2']) workers.push(await startLocalWorker(server, name))
    const mesh = server.meshes.get('default')
    if (mesh === undefined) throw new Error('no mesh')
    await readyPlan(mesh, (plan) => plan.stages.length === 2)
    const served = gateway?.find('default') as MeshGateway
    const before = served.wireBytes()
    const tokens = await meshTokens(served, PROMPT, TOKENS)
    const after = served.wireBytes()
    return { tokens, bytes: after.sent + after.received - before.sent - before.received }
  } finally {
    await Promise.all(workers.map((w) => w.stop()))
    await server.close()
  }
}

describe('fp16 hidden states in a mesh', () => {
  test('in process: the fp32 reference tokens, and 2 bytes saved per hidden value each way', async () => {
    const reference = await referenceTokens(modelDir, PROMPT, TOKENS)
    const fp32 = await run('fp32')
    const fp16 = await run('fp16')
    expect(fp32.tokens).toEqual(reference)
    expect(fp16.tokens).toEqual(reference)
    // Every position's state crosses twice (stage 0 -> gateway -> stage 1); each message gains a
    // 4-byte tag. Link probes (pings) add a little noise to either total, hence the 10%.
    const steps = 1 + (TOKENS - 1)
    const positions = PROMPT.length + TOKENS - 1
    const saved = 2 * positions * HIDDEN * 2 - 2 * steps * 4
    expect(Math.abs(fp32.bytes - fp16.bytes - saved)).toBeLessThan(saved * 0.1)
    // Chained worker to worker, no hidden state reaches the gateway at all: both fp32 crossings are
    // saved, and with them the headers of one message each way per step (bounded by half again).
    const chained = await run('fp32', 'chain')
    expect(chained.tokens).toEqual(reference)
    const relayed = 2 * positions * HIDDEN * 4
    expect(fp32.bytes - chained.bytes).toBeGreaterThan(0.9 * relayed)
    expect(fp32.bytes - chained.bytes).toBeLessThan(1.5 * relayed)
  }, 120_000)
})

describe('fp16 hidden states across real processes', () => {
  let cache: string
  let server: Proc | undefined
  const workers: Proc[] = []
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()))
    await server?.stop()
    if (cache !== undefined) await rm(cache, { recursive: true, force: true })
  })

  test('butterfly-server --wire-dtype fp16: the completion equals the single-process fp32 text', async () => {
    cache = await mkdtemp(join(tmpdir(), 'bf-fp16-'))
    const env = { BUTTERFLY_CACHE_DIR: cache }
    const args = [
      '--port',
      '0',
      '--model',
      'synthetic:tiny',
      '--plan-strategy',
      'uniform',
      '--wire-dtype',
      'fp16',
    ]
    server = start(SERVER_BIN, args, env)
    const url = (await server.waitFor(/listening on (http:\/\/\S+)/))[1] as string
    await server.waitFor(/hidden states on the wire: fp16/)
    for (const name of ['w1', 'w2']) {
      const join = ['join', '--server', url, '--device', 'cpu', '--name', name, '--memory', '1GB']
      workers.push(start(WORKER_BIN, join, { ...env, BUTTERFLY_IDENTITY: `${cache}/${name}.identity.json` }))
    }
    const prompt = 'Once upon a time'
    const cli = start(
      WORKER_BIN,
      ['generate', '--model', 'synthetic:tiny', '--prompt', prompt, '--max-tokens', '24'],
      env,
    )
    expect(await cli.exited).toBe(0)
    const reference = cli.output().replace(/\n$/, '')
    type Health = { meshes: Array<{ ready: boolean; plan: { stages: unknown[] } }> }
    await until<Health>(
      `${url}/health`,
      (h) => h.meshes[0]?.ready === true && h.meshes[0].plan.stages.length === 2,
    )
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', prompt, max_tokens: 24, temperature: 0 }),
    })
    expect(res.status).toBe(200)
    const body = (await res.json()) as { choices: Array<{ text: string }> }
    expect(reference.length).toBeGreaterThan(0)
    expect(body.choices[0]?.text).toBe(reference)
  }, 120_000)
})
