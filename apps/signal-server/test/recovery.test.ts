import { Xoshiro128ss } from '@butterfly/core'
import { nodeWrtc, type WorkerNode } from '@butterfly/node-worker'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { attachGateway, type Gateway } from '../src/gateway/gateway.js'
import type { MeshGateway } from '../src/gateway/mesh-gateway.js'
import type { SignalServer } from '../src/signal-server.js'
import { startServer, tinyModel } from './helpers.js'
import { meshTokens, readyPlan, referenceTokens, startLocalWorker } from './mesh-harness.js'

// r = 1: each stage has one peer. When a worker dies mid-generation the mesh re-plans onto the
// peers left, the gateway moves the generation to the new pipeline and replays its tokens, and
// the generation finishes with the tokens an undisturbed run gives.
const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const TOKENS = 24
let server: SignalServer
let gateway: Gateway | undefined
let modelDir: string
let cleanup: () => Promise<void>
const live = new Set<WorkerNode>()

async function join(name: string): Promise<WorkerNode> {
  const node = await startLocalWorker(server, name)
  live.add(node)
  return node
}

beforeAll(async () => {
  const model = await tinyModel()
  modelDir = model.dir
  cleanup = model.cleanup
  server = await startServer({
    meshes: [{ name: 'default', modelDir }],
    planOptions: { strategy: 'uniform' },
    extend: async (parts) => {
      gateway = await attachGateway(parts, { planWaitMs: 60_000 }, { wrtc: nodeWrtc() })
    },
  })
})

afterAll(async () => {
  await Promise.all([...live].map((w) => w.stop()))
  await server?.close()
  await cleanup?.()
})

describe('a stage peer dying mid-generation (r = 1, with a spare peer)', () => {
  test('20 trials at random steps: each re-plans, replays and finishes with the undisturbed tokens', async () => {
    const reference = await referenceTokens(modelDir, PROMPT, TOKENS)

    const mesh = server.meshes.get('default')
    if (!mesh) throw new Error('no mesh')
    const served = gateway?.find('default') as MeshGateway
    const rng = new Xoshiro128ss(11)
    for (let trial = 0; trial < 20; trial++) {
      while (live.size < 2) await join(`w-${trial}-${live.size}`)
      await readyPlan(mesh, (plan) => plan.stages.length === 2)
      const victims = [...live]
      const victim = victims[Math.floor(rng.nextFloat64() * victims.length)] as WorkerNode
      const killAt = 1 + Math.floor(rng.nextFloat64() * (TOKENS - 2))
      const tokens = await meshTokens(served, PROMPT, TOKENS, async (count) => {
        if (count !== killAt) return
        live.delete(victim)
        await victim.stop()
      })
      expect(tokens).toEqual(reference)
    }
  })
})
