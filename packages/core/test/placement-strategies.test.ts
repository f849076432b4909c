import { describe, expect, it } from 'vitest'
import { PlacementError } from '../src/errors.js'
import { memoryWeightedPlan, proportionalCounts } from '../src/placement/memory-weighted-plan.js'
import { planBenchmark } from '../src/placement/plan-benchmark.js'
import { throughputPlan } from '../src/placement/throughput-plan.js'
import { uniformPlan } from '../src/placement/uniform-plan.js'
import { PLENTY, peer, TOY_EMBED, TOY_HEAD, TOY_LAYER, TOY_MEMORY, toyConfig } from './placement-helpers.js'

const opts = (hopSeconds: number) => ({ ...TOY_MEMORY, hopSeconds })
const ranges = (plan: { stages: readonly { start: number; end: number; peerId: string }[] }) =>
  plan.stages.map((s) => `${s.peerId}:${s.start}-${s.end}`)

function noCapacity(fn: () => unknown): PlacementError {
  try {
    fn()
  } catch (e) {
    expect(e).toBeInstanceOf(PlacementError)
    expect((e as PlacementError).code).toBe('ERR_PLACEMENT_NO_CAPACITY')
    return e as PlacementError
  }
  throw new Error('expected ERR_PLACEMENT_NO_CAPACITY')
}

describe('uniformPlan', () => {
  it('gives peers equal ranges in id order, earlier stages taking the remainder', () => {
    const peers = [peer('c', PLENTY, 1), peer('a', PLENTY, 2), peer('b', PLENTY, 4)]
    const plan = uniformPlan(toyConfig(), peers, opts(0.1))
    expect(plan.strategy).toBe('uniform')
    expect(ranges(plan)).toEqual(['a:0-2', 'b:2-3', 'c:3-4'])
    // Slowest: c runs 1 layer at 1 layer-step/s; two hops at 0.1 s.
    expect(plan.bottleneckSecondsPerToken).toBeCloseTo(1.2, 12)
  })

  it('uses at most one stage per layer, taking peers in id order', () => {
    const peers = ['e', 'd', 'c', 'b', 'a', 'f'].map((id) => peer(id, PLENTY, 1))
    expect(ranges(uniformPlan(toyConfig(), peers, opts(0)))).toEqual(['a:0-1', 'b:1-2', 'c:2-3', 'd:3-4'])
  })

  it('skips peers with no memory or no throughput', () => {
    const peers = [peer('a', 0, 5), peer('b', PLENTY, 0), peer('c', PLENTY, 1), peer('d', PLENTY, 1)]
    expect(ranges(uniformPlan(toyConfig(), peers, opts(0)))).toEqual(['c:0-2', 'd:2-4'])
  })

  it('fails when a peer cannot hold its equal share, naming it', () => {
    // 'a' holds embeddings + 1 layer but is given 2.
    const peers = [peer('a', TOY_EMBED + TOY_LAYER, 1), peer('b', PLENTY, 1)]
    const err = noCapacity(() => uniformPlan(toyConfig(), peers, opts(0)))
    expect(err.message).toContain('"a"')
    expect(err.message).toContain('[0, 2)')
  })

  it('fits exactly when memory equals the need', () => {
    const peers = [peer('a', TOY_EMBED + 2 * TOY_LAYER, 1), peer('b', TOY_HEAD + 2 * TOY_LAYER, 1)]
    expect(ranges(uniformPlan(toyConfig(), peers, opts(0)))).toEqual(['a:0-2', 'b:2-4'])
  })
})

describe('memoryWeightedPlan', () => {
  it.each([
    [[1, 1, 1], 4, [2, 1, 1]],
    [[5, 3, 2], 10, [5, 3, 2]],
    [[100, 1], 3, [2, 1]],
    [[1000, 1, 1], 4, [2, 1, 1]],
    [[3, 1], 8, [6, 2]],
    [[1, 1, 1, 1], 4, [1, 1, 1, 1]],
    [[1e308, 1e308, 1e308], 3, [1, 1, 1]],
  ])('proportionalCounts(%j, %d) = %j', (weights, total, want) => {
    expect(proportionalCounts(weights, total)).toEqual(want)
  })

  it('orders peers by memory, largest first, with layers in proportion', () => {
    const peers = [peer('small', 1000, 1), peer('big', 3000, 1)]
    const plan = memoryWeightedPlan(toyConfig(), peers, opts(0))
    expect(plan.strategy).toBe('memory')
    expect(ranges(plan)).toEqual(['big:0-3', 'small:3-4'])
    expect(plan.bottleneckSecondsPerToken).toBeCloseTo(3, 12)
  })

  it('breaks memory ties by id and uses only the largest peers when there are more peers than layers', () => {
    const peers = ['e', 'd', 'c', 'b', 'a'].map((id, i) => peer(id, PLENTY + (i === 0 ? 1 : 0), 1))
    expect(ranges(memoryWeightedPlan(toyConfig(), peers, opts(0)))).toEqual([
      'e:0-1',
      'a:1-2',
      'b:2-3',
      'c:3-4',
    ])
  })

  it('fails when a peer cannot hold its share', () => {
    // Each small peer must take at least one layer (280 bytes) but has 100.
    const peers = [peer('big', 10_000, 1), peer('s1', 100, 1), peer('s2', 100, 1)]
    const err = noCapacity(() => memoryWeightedPlan(toyConfig(), peers, opts(0)))
    expect(err.message).toMatch(/"s1"|"s2"/)
  })
})

describe('throughputPlan', () => {
  it('splits 3:1 between a peer three times faster and a slow one', () => {
    const peers = [peer('slow', PLENTY, 1), peer('fast', PLENTY, 3)]
    const plan = throughputPlan(toyConfig(), peers, opts(0))
    expect(plan.strategy).toBe('throughput')
    expect(ranges(plan)).toEqual(['fast:0-3', 'slow:3-4'])
    expect(plan.bottleneckSecondsPerToken).toBeCloseTo(1, 12)
  })

  it('drops a peer whose hop costs more than it saves', () => {
    const peers = [peer('slow', PLENTY, 1), peer('fast', PLENTY, 3)]
    // Alone: 4/3 s. Together: 1 s + a 0.5 s hop.
    const plan = throughputPlan(toyConfig(), peers, opts(0.5))
    expect(ranges(plan)).toEqual(['fast:0-4'])
    expect(plan.bottleneckSecondsPerToken).toBeCloseTo(4 / 3, 12)
    // A 0.2 s hop is worth paying: 1.2 < 1.333.
    expect(throughputPlan(toyConfig(), peers, opts(0.2)).stages).toHaveLength(2)
  })

  it('gives a peer with huge throughput far more layers than the others', () => {
    const config = toyConfig({ numLayers: 12 })
    const peers = [
      peer('a', PLENTY, 1),
      peer('b', PLENTY, 1),
      peer('huge', PLENTY, 1000),
      peer('c', PLENTY, 1),
    ]
    const alone = throughputPlan(config, peers, opts(0.001))
    expect(ranges(alone)).toEqual(['huge:0-12'])
    // When its memory caps it at 8 middle layers, it still takes the most.
    const capped = peers.map((p) => (p.id === 'huge' ? { ...p, memoryBytes: 8 * TOY_LAYER } : p))
    const plan = throughputPlan(config, capped, opts(0))
    const layersOf = (id: string) =>
      plan.stages.filter((s) => s.peerId === id).reduce((n, s) => n + s.end - s.start, 0)
    expect(layersOf('huge')).toBe(8)
    for (const id of ['a', 'b', 'c']) expect(layersOf(id)).toBeLessThan(8)
    expect(plan.bottleneckSecondsPerToken).toBeCloseTo(2, 12)
  })

  it('puts embeddings and head on the peers that can hold them', () => {
    // Only 'roomy' can hold the embeddings or head with a layer; 'tight' fits one bare layer.
    const peers = [peer('roomy', TOY_EMBED + TOY_HEAD + 3 * TOY_LAYER, 1), peer('tight', TOY_LAYER, 10)]
    const config = toyConfig({ numLayers: 4 })
    // 'tight' can only be a middle stage, so with two peers no arrangement exists but 'roomy' alone.
    expect(() => throughputPlan(config, peers, opts(0))).toThrow(PlacementError)
    const three = [...peers, peer('edge', TOY_HEAD + TOY_LAYER, 1)]
    const plan = throughputPlan(config, three, opts(0))
    expect(ranges(plan)).toEqual(['roomy:0-2', 'tight:2-3', 'edge:3-4'])
  })

  it('beats both other strategies on a mixed mesh', () => {
    const config = toyConfig({ numLayers: 10 })
    const peers = [peer('p1', 4000, 5), peer('p2', 3000, 1), peer('p3', 1500, 2), peer('p4', 900, 0.5)]
    const o = opts(0.01)
    const best = throughputPlan(config, peers, o).bottleneckSecondsPerToken
    expect(best).toBeLessThanOrEqual(memoryWeightedPlan(config, peers, o).bottleneckSecondsPerToken)
    expect(best).toBeLessThanOrEqual(uniformPlan(config, peers, o).bottleneckSecondsPerToken)
  })

  it('fails when no arrangement fits', () => {
    noCapacity(() => throughputPlan(toyConfig(), [peer('a', TOY_LAYER, 1), peer('b', TOY_LAYER, 1)], opts(0)))
    noCapacity(() => throughputPlan(toyConfig(), [], opts(0)))
  })

  it('plans 100 peers x 80 layers well within a generous bound', () => {
    // The timing goal (< 50 ms) is reported by npm run bench; this only catches a blow-up.
    const result = planBenchmark({ runs: 3 })
    expect(result.peers).toBe(100)
    expect(result.layers).toBe(80)
    expect(result.stages).toBeGreaterThan(0)
    expect(result.medianMs).toBeLessThan(500)
  })
})
