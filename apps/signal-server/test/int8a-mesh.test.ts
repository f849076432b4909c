import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNodeBackend, nodeWrtc, resolveModelDir, type WorkerNode } from '@butterfly/node-platform'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { attachGateway, type Gateway } from '../src/api/attach-gateway.js'
import type { MeshGateway } from '../src/gateway/mesh-gateway.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer } from './helpers.js'
import { classReferenceTokens, meshTokens, readyPlan, startLocalWorker } from './mesh-harness.js'

// Two stages of three replicas of an int4 model, every replica computing over int8 activations
// (--int4-compute int8): they join as numeric class cpu/int8a, stage 0's replicas pass calibration
// against the float64 truth within that class's cap (which fp16's 2e-2 would not: calibration then
// refuses every replica), they vote each other's outputs through
// (nobody flagged), and the tokens are the single-process int8 ones. Real WebRTC, workers in
// this process.

const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const TOKENS = 24
let cache: string
let modelDir: string
let server: SignalServer
let gateway: Gateway | undefined
const workers: WorkerNode[] = []

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'bf-int8a-mesh-'))
  modelDir = await resolveModelDir('synthetic:tiny:int4', cache)
  server = await startServer({
    meshes: [{ name: 'default', modelDir }],
    replicas: 3,
    planOptions: { strategy: 'uniform' },
    extend: async (parts) => {
      gateway = await attachGateway(parts, { verification: 'every-step' }, { wrtc: nodeWrtc() })
    },
  })
  for (const name of ['a', 'b', 'c', 'd', 'e', 'f']) {
    const backend = createNodeBackend({ int4Compute: 'int8' })
    workers.push(await startLocalWorker(server, name, backend, { int4Compute: 'int8' }))
  }
}, 120_000)

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()))
  await server?.close()
  await rm(cache, { recursive: true, force: true })
})

/** The single-process answer of the class: one stage, int8 activations. */
const int8Reference = () =>
  classReferenceTokens(
    modelDir,
    undefined,
    () => false,
    PROMPT,
    TOKENS,
    createNodeBackend({ int4Compute: 'int8' }),
  )

describe('replicas computing int4 over int8 activations', () => {
  test('join as cpu/int8a, are calibrated, agree on every step, and give the single-process int8 tokens', async () => {
    const mesh = server.meshes.get('default')
    if (!mesh) throw new Error('no mesh')
    await readyPlan(
      mesh,
      (plan) => plan.stages.length === 2 && plan.stages.every((s) => s.replicas?.length === 2),
    )
    const health = (await (await fetch(`${server.url}/health`)).json()) as {
      meshes: Array<{ peers: Array<{ numericClass: string }> }>
    }
    expect(health.meshes[0]?.peers).toHaveLength(6)
    expect(new Set(health.meshes[0]?.peers.map((p) => p.numericClass))).toEqual(new Set(['cpu/int8a']))
    const served = gateway?.find('default') as MeshGateway
    expect(await meshTokens(served, PROMPT, TOKENS)).toEqual(await int8Reference())
    for (const w of workers) {
      expect(served.reputation.isFlagged(w.peerId)).toBe(false)
      expect(served.reputation.get(w.peerId)?.disagreements ?? 0).toBe(0)
    }
    // Every replica voted: agreements were recorded, so the stage really was replicated.
    const agreements = workers.reduce((n, w) => n + (served.reputation.get(w.peerId)?.agreements ?? 0), 0)
    expect(agreements).toBeGreaterThan(0)
    expect(mesh.excludedPeers()).toEqual([])
  }, 120_000)
})
