import { mulberry32 as seededRandom } from '@butterfly/testing'
import { describe, expect, it } from 'vitest'
import { ButterflyError } from '../src/errors.js'
import type { ModelConfig } from '../src/model/model-config.js'
import { memoryWeightedPlan } from '../src/placement/memory-weighted-plan.js'
import type { PeerBackend, PeerCapacity } from '../src/placement/peer-capacity.js'
import type { Plan } from '../src/placement/plan.js'
import { planPlacement } from '../src/placement/plan-placement.js'
import { stageMemoryBytes } from '../src/placement/stage-memory.js'
import { throughputPlan } from '../src/placement/throughput-plan.js'
import { uniformPlan } from '../src/placement/uniform-plan.js'
import { bruteForceBestCost, expectValidPlan, type MemoryOpts, toyConfig } from './placement-helpers.js'

type Opts = MemoryOpts & { hopSeconds: number }
const BACKENDS: PeerBackend[] = ['cpu', 'cuda', 'wasm', 'webgpu']

/** A plan, or undefined when the strategy reported no capacity; any other error fails the test. */
function attempt(fn: () => Plan): Plan | undefined {
  try {
    return fn()
  } catch (e) {
    expect(e).toBeInstanceOf(ButterflyError)
    expect((e as ButterflyError).code).toBe('ERR_PLACEMENT_NO_CAPACITY')
    return undefined
  }
}

interface Case {
  config: ModelConfig
  peers: PeerCapacity[]
  opts: Opts
}

/**
 * Random meshes around the edge of feasibility: each peer's memory is drawn in units of "a few
 * layers plus embeddings or head", so roles matter; some peers are dead (0 memory or throughput);
 * throughputs span two decades and sometimes repeat exactly, to exercise ties.
 */
function randomCase(rand: () => number, maxPeers: number, maxLayers: number): Case {
  const numLayers = 1 + Math.floor(rand() * maxLayers)
  const tied = rand() < 0.5
  const config = toyConfig({
    numLayers,
    tieWordEmbeddings: tied,
    attentionBias: rand() < 0.3,
    vocabSize: 10 + Math.floor(rand() * 200),
  })
  const opts: Opts = {
    bytesPerParam: 1,
    kvContext: 8,
    overheadBytes: Math.floor(rand() * 100),
    hopSeconds: [0, 0.001, 0.05, 0.5, 3][Math.floor(rand() * 5)] as number,
  }
  const layer = stageMemoryBytes(config, 1 % numLayers, (1 % numLayers) + 1, opts)
  const count = 1 + Math.floor(rand() * maxPeers)
  const speeds = [1, 2, 3, 0.5]
  const peers = Array.from({ length: count }, (_, i): PeerCapacity => {
    const dead = rand()
    return {
      id: `p${Math.floor(rand() * 1000)}-${i}`,
      memoryBytes: dead < 0.05 ? 0 : Math.floor(rand() * (numLayers / 2 + 3) * layer),
      tokensPerSec: dead > 0.95 ? 0 : rand() < 0.4 ? (speeds[i % 4] as number) : 0.1 + rand() * 10,
      backend: BACKENDS[i % 4] as PeerBackend,
    }
  })
  return { config, peers, opts }
}

function checkCase({ config, peers, opts }: Case, bruteForce: boolean): void {
  const through = attempt(() => throughputPlan(config, peers, opts))
  const memory = attempt(() => memoryWeightedPlan(config, peers, opts))
  const uniform = attempt(() => uniformPlan(config, peers, opts))
  for (const plan of [through, memory, uniform]) if (plan) expectValidPlan(plan, config, peers, opts)
  const slack = (x: number) => 1e-12 * Math.max(1, x)
  if (memory) {
    expect(through).toBeDefined()
    expect(through?.bottleneckSecondsPerToken).toBeLessThanOrEqual(
      memory.bottleneckSecondsPerToken + slack(memory.bottleneckSecondsPerToken),
    )
  }
  if (uniform) {
    expect(through).toBeDefined()
    expect(through?.bottleneckSecondsPerToken).toBeLessThanOrEqual(
      uniform.bottleneckSecondsPerToken + slack(uniform.bottleneckSecondsPerToken),
    )
  }
  if (bruteForce) {
    const best = bruteForceBestCost(config, peers, opts)
    if (best === Number.POSITIVE_INFINITY) expect(through).toBeUndefined()
    else
      expect(Math.abs((through?.bottleneckSecondsPerToken ?? Number.NaN) - best)).toBeLessThanOrEqual(
        slack(best),
      )
  }
  const chosen = attempt(() => planPlacement(config, peers, opts))
  expect(chosen).toEqual(through)
}

describe('placement properties over seeded random meshes', () => {
  it('throughput plans are optimal against exhaustive search on small meshes', () => {
    const rand = seededRandom(20240601)
    let feasible = 0
    for (let i = 0; i < 400; i++) {
      const c = randomCase(rand, 5, 7)
      checkCase(c, true)
      if (attempt(() => throughputPlan(c.config, c.peers, c.opts))) feasible++
    }
    // The generator must produce both outcomes, or the comparison above proves little.
    expect(feasible).toBeGreaterThan(100)
    expect(feasible).toBeLessThan(380)
  })

  it('every plan is valid and throughput is never worse than memory or uniform on larger meshes', () => {
    const rand = seededRandom(99)
    let compared = 0
    for (let i = 0; i < 150; i++) {
      const c = randomCase(rand, 40, 48)
      checkCase(c, false)
      if (attempt(() => uniformPlan(c.config, c.peers, c.opts))) compared++
    }
    expect(compared).toBeGreaterThan(5)
  })

  it('gives identical plans for permuted input', () => {
    const rand = seededRandom(3)
    for (let i = 0; i < 60; i++) {
      const { config, peers, opts } = randomCase(rand, 12, 20)
      const a = attempt(() => planPlacement(config, peers, opts))
      const b = attempt(() => planPlacement(config, [...peers].reverse(), opts))
      expect(b).toEqual(a)
    }
  })
})
