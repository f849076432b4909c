import type { InferenceBackend } from '@butterfly/core'
import { createNodeBackend, nodeWrtc, type WorkerNode } from '@butterfly/node-platform'
import { FaultyStage } from '@butterfly/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { attachGateway, type Gateway } from '../src/api/attach-gateway.js'
import type { MeshGateway } from '../src/gateway/mesh-gateway.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer, tinyModel } from './helpers.js'
import { meshTokens, readyPlan, referenceTokens, startLocalWorker } from './mesh-harness.js'

// A chained plan (r=1, two workers) where one worker benchmarks honestly at join but then answers
// every step late. The gateway times only the chain, against the sum of the peers' claims: the
// chain is found slow and the plan is relayed through the gateway, where the per-peer slow-claim
// check finds the late worker and excludes it. Tokens stay the reference's throughout (late
// answers are right answers). Real WebRTC, workers in this process. The margins are wide: an honest
// step here takes a few ms against the 25 ms of slack, the late one over 100 ms.

const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const TOKENS = 12
let modelDir: string
let cleanup: () => Promise<void>
let server: SignalServer
let gateway: Gateway | undefined
const workers: WorkerNode[] = []
const logs: string[] = []

/** Honest for its first stage (the join benchmark's), then every step 100 ms late. */
function lateAfterBenchmark(): InferenceBackend {
  const real = createNodeBackend()
  let created = 0
  return {
    name: 'onnxruntime-node/cpu (late)',
    createStage: async (init, weights) => {
      const stage = await real.createStage(init, weights)
      return created++ === 0 ? stage : new FaultyStage(stage, { mode: 'late', delayMs: 100 })
    },
  }
}

beforeAll(async () => {
  ;({ dir: modelDir, cleanup } = await tinyModel())
  server = await startServer({
    meshes: [{ name: 'default', modelDir }],
    planOptions: { strategy: 'uniform' },
    extend: async (parts) => {
      gateway = await attachGateway(
        parts,
        { slowClaim: { factor: 2, minSteps: 4, slackMs: 25 } },
        { wrtc: nodeWrtc(), log: (line) => logs.push(line) },
      )
    },
  })
  workers.push(await startLocalWorker(server, 'honest'))
  workers.push(await startLocalWorker(server, 'late', lateAfterBenchmark()))
  const mesh = server.meshes.get('default')
  if (mesh === undefined) throw new Error('no mesh')
  await readyPlan(mesh, (plan) => plan.stages.length === 2)
}, 120_000)

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()))
  await server?.close()
  await cleanup?.()
})

describe('a chain slower than its peers claimed', () => {
  test('is relayed, and the per-peer check then excludes the late worker; tokens stay the reference', async () => {
    const mesh = server.meshes.get('default')
    const late = workers[1] as WorkerNode
    const served = gateway?.find('default') as MeshGateway
    const reference = await referenceTokens(modelDir, PROMPT, TOKENS)
    // Chained first: the chain is judged after 4 single-token steps.
    expect(await meshTokens(served, PROMPT, TOKENS)).toEqual(reference)
    expect(logs.some((l) => l.includes('its chain is slower than its peers claimed'))).toBe(true)
    expect(mesh?.excludedPeers()).toEqual([])
    // Relayed now: the late worker's own steps are timed, and it loses its place.
    expect(await meshTokens(served, PROMPT, TOKENS)).toEqual(reference)
    expect(mesh?.excludedPeers()).toEqual([late.peerId])
  }, 120_000)
})
