import type { InferenceBackend } from '@butterfly/core'
import { createNodeBackend, type WorkerNode } from '@butterfly/node-platform'
import { FaultyStage } from '@butterfly/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type ChainMesh, startChainMesh } from './chain-mesh.js'
import { meshTokens, referenceTokens } from './mesh-harness.js'

// A chained plan (r=1, two workers) where one worker benchmarks honestly at join but then answers
// every step late. The gateway times only the chain, against the sum of the peers' claims: the
// chain is found slow and the plan is relayed through the gateway, where the per-peer slow-claim
// check finds the late worker and excludes it. Tokens stay the reference's throughout (late
// answers are right answers). Real WebRTC, workers in this process. The margins are wide: an honest
// step here takes a few ms against the 25 ms of slack, the late one over 100 ms.

const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const TOKENS = 12
let mesh: ChainMesh

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
  mesh = await startChainMesh({ slowClaim: { factor: 2, minSteps: 4, slackMs: 25 } }, [
    { name: 'honest' },
    { name: 'late', backend: lateAfterBenchmark() },
  ])
}, 120_000)

afterAll(async () => mesh?.close())

describe('a chain slower than its peers claimed', () => {
  test('is relayed, and the per-peer check then excludes the late worker; tokens stay the reference', async () => {
    const { modelDir, logs, gateway: served } = mesh
    const late = mesh.workers[1] as WorkerNode
    const plans = mesh.server.meshes.get('default')
    const reference = await referenceTokens(modelDir, PROMPT, TOKENS)
    // Chained first: the chain is judged after 4 single-token steps.
    expect(await meshTokens(served, PROMPT, TOKENS)).toEqual(reference)
    expect(logs.some((l) => l.includes('its chain is slower than its peers claimed'))).toBe(true)
    expect(plans?.excludedPeers()).toEqual([])
    // Relayed now: the late worker's own steps are timed, and it loses its place.
    expect(await meshTokens(served, PROMPT, TOKENS)).toEqual(reference)
    expect(plans?.excludedPeers()).toEqual([late.peerId])
  }, 120_000)
})
