import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { MeshGateway } from '../src/gateway/mesh-gateway.js'
import { type ChainMesh, startChainMesh } from './chain-mesh.js'
import { meshTokens, referenceTokens } from './mesh-harness.js'

// A pipeline the gateway replaces (here by switching the relay, which rebuilds the current plan
// as a re-plan does) must let go of the connections it shares with the new one: its stages are
// disposed once no generation runs on it. Two workers in this process over real WebRTC.

const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const TOKENS = 16

let mesh: ChainMesh
let reference: number[]

beforeAll(async () => {
  mesh = await startChainMesh({}, [{ name: 'w1' }, { name: 'w2' }])
  reference = await referenceTokens(mesh.modelDir, PROMPT, TOKENS)
}, 120_000)

afterAll(async () => mesh?.close())

/** After the retirements already queued have been checked (PipelineLeases defers them one task). */
const settled = (g: MeshGateway) =>
  new Promise<ReturnType<MeshGateway['pipelineStats']>>((resolve) =>
    setImmediate(() => resolve(g.pipelineStats())),
  )

describe('pipelines the gateway replaces', () => {
  test('are disposed once their last generation ends, and keep no subscription', async () => {
    const { gateway } = mesh
    expect(await meshTokens(gateway, PROMPT, TOKENS)).toEqual(reference)
    const start = await settled(gateway)
    expect(start).toMatchObject({ retiring: 0, held: 0, disposed: 0 })
    expect(start.messageListeners).toBeGreaterThan(0)

    // A generation running on the chain when the relay switches keeps its pipeline to the end.
    let during: ReturnType<MeshGateway['pipelineStats']> | undefined
    const tokens = await meshTokens(gateway, PROMPT, TOKENS, async (n) => {
      if (n !== 3) return
      await gateway.setRelay('coordinator')
      during = await settled(gateway)
    })
    expect(tokens).toEqual(reference)
    expect(during).toMatchObject({ retiring: 1, held: 1, disposed: 0 })
    // Both pipelines' stages were subscribed while it ran.
    expect(during?.messageListeners).toBeGreaterThan(start.messageListeners)
    expect(await settled(gateway)).toEqual({ ...start, disposed: 1 })

    // Switch after switch with nothing running: each replaced pipeline goes at once.
    for (let i = 0; i < 6; i++) await gateway.setRelay(i % 2 === 0 ? 'chain' : 'coordinator')
    expect(await settled(gateway)).toEqual({ ...start, disposed: 7 })
    expect(await meshTokens(gateway, PROMPT, TOKENS)).toEqual(reference)
    expect(await settled(gateway)).toEqual({ ...start, disposed: 7 })
  }, 120_000)
})
