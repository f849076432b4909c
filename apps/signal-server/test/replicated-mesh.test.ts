import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import { type InferenceBackend, type PlanStage, stagePeers, Xoshiro128ss } from '@butterfly/core'
import { createNodeBackend, nodeWrtc, type WorkerNode } from '@butterfly/node-platform'
import { FaultyStage } from '@butterfly/testing'
import { type Proc, startWorkerProcess } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { attachGateway, type Gateway } from '../src/api/attach-gateway.js'
import type { MeshGateway } from '../src/gateway/mesh-gateway.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer, tinyModel } from './helpers.js'
import { meshTokens, readyPlan, referenceTokens, startLocalWorker } from './mesh-harness.js'

// A mesh with 3 replicas per stage over real WebRTC, one worker lying through a test-only
// wrapper around its stage executor: the gateway votes it down, answers with the honest
// tokens and flags the liar.
const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const TOKENS = 32
let server: SignalServer
let gateway: Gateway | undefined
let modelDir: string
let cleanup: () => Promise<void>
const workers: WorkerNode[] = []
const stopped = new Set<WorkerNode>()

function lyingBackend(): InferenceBackend {
  const real = createNodeBackend()
  return {
    name: 'onnxruntime-node/cpu (lying)',
    createStage: async (init, weights) =>
      new FaultyStage(await real.createStage(init, weights), { mode: 'noise', noise: 0.5, fromStep: 2 }),
  }
}

async function join(name: string, backend: InferenceBackend): Promise<WorkerNode> {
  const node = await startLocalWorker(server, name, backend)
  workers.push(node)
  return node
}

beforeAll(async () => {
  const model = await tinyModel()
  modelDir = model.dir
  cleanup = model.cleanup
  server = await startServer({
    meshes: [{ name: 'default', modelDir }],
    replicas: 3,
    extend: async (parts) => {
      gateway = await attachGateway(parts, {}, { wrtc: nodeWrtc() })
    },
  })
})

afterAll(async () => {
  await Promise.all(workers.filter((w) => !stopped.has(w)).map((w) => w.stop()))
  await server?.close()
  await cleanup?.()
})

describe('replicated stages', () => {
  test('one lying replica out of three is outvoted and flagged; tokens are the honest ones', async () => {
    await join('honest-1', createNodeBackend())
    await join('honest-2', createNodeBackend())
    const liar = await join('liar', lyingBackend())
    const mesh = server.meshes.get('default')
    if (!mesh) throw new Error('no mesh')
    // Wait for the plan that holds all three peers: one stage with two replicas.
    await readyPlan(mesh, (plan) => plan.stages.length === 1 && plan.stages[0]?.replicas?.length === 2)

    const reference = await referenceTokens(modelDir, PROMPT, TOKENS)
    const served = gateway?.find('default') as MeshGateway
    const tokens = await meshTokens(served, PROMPT, TOKENS)
    expect(tokens).toEqual(reference)
    expect(served.reputation.isFlagged(liar.peerId)).toBe(true)
    for (const honest of workers.filter((w) => w !== liar)) {
      expect(served.reputation.isFlagged(honest.peerId)).toBe(false)
      expect(served.reputation.get(honest.peerId)?.disagreements ?? 0).toBe(0)
    }
  })

  test('the flagged peer is excluded from the next plan and shown so in /health and /metrics', async () => {
    const mesh = server.meshes.get('default')
    const liar = workers.find((w) => mesh?.excludedPeers().includes(w.peerId))
    expect(liar).toBeDefined()
    const plan = mesh?.plan
    expect(plan?.excluded).toEqual([liar?.peerId])
    expect(plan?.stages.flatMap(stagePeers)).not.toContain(liar?.peerId)
    const health = (await (await fetch(`${server.url}/health`)).json()) as {
      meshes: Array<{ peers: Array<{ id: string; excluded: boolean }>; reputation: { flagged: number } }>
    }
    const peers = health.meshes[0]?.peers ?? []
    expect(peers.find((p) => p.id === liar?.peerId)?.excluded).toBe(true)
    expect(peers.filter((p) => p.excluded)).toHaveLength(1)
    expect(health.meshes[0]?.reputation.flagged).toBe(1)
    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    expect(metrics).toMatch(/butterfly_peers_excluded\{mesh="default"\} 1/)
  })

  test('SIGKILL of a replica process mid-generation: 20 trials at random steps all finish with the honest tokens', async () => {
    const mesh = server.meshes.get('default')
    if (!mesh) throw new Error('no mesh')
    const served = gateway?.find('default') as MeshGateway
    const rng = new Xoshiro128ss(7)
    const reference = await meshTokens(served, PROMPT, TOKENS)
    const identities = await mkdtemp(joinPath(tmpdir(), 'butterfly-kill-'))
    const procs: Proc[] = []
    try {
      for (let trial = 0; trial < 20; trial++) {
        // Top the stage back up to three with a worker process, then kill that process outright
        // (no leave, no goodbye) at a random step.
        const { proc, peerId } = await startWorkerProcess(server.url, `spare-${trial}`, {
          identity: joinPath(identities, `spare-${trial}.json`),
        })
        procs.push(proc)
        await readyPlan(
          mesh,
          (plan) => plan.stages[0] !== undefined && stagePeers(plan.stages[0]).includes(peerId),
        )
        expect(stagePeers(mesh.plan.stages[0] as PlanStage)).toHaveLength(3)
        const killAt = 1 + Math.floor(rng.nextFloat64() * (TOKENS - 2))
        const tokens = await meshTokens(served, PROMPT, TOKENS, async (count) => {
          if (count === killAt) await proc.stop('SIGKILL')
        })
        expect(tokens).toEqual(reference)
        expect(served.reputation.isFlagged(peerId)).toBe(false)
      }
    } finally {
      await Promise.all(procs.map((p) => p.stop('SIGKILL')))
      await rm(identities, { recursive: true, force: true })
    }
  })
})
