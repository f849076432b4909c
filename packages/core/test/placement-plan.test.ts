import { mulberry32 as seededRandom } from '@butterfly/testing'
import { describe, expect, it } from 'vitest'
import { ButterflyError, PlacementError } from '../src/errors.js'
import type { PeerCapacity } from '../src/placement/peer-capacity.js'
import { formatBytes } from '../src/placement/plan.js'
import { PlanCache, planCacheKey } from '../src/placement/plan-cache.js'
import { planPlacement, strategyOrder } from '../src/placement/plan-placement.js'
import { stageMemoryBytes } from '../src/placement/stage-memory.js'
import { PLENTY, peer, TOY_EMBED, TOY_LAYER, TOY_MEMORY, toyConfig } from './placement-helpers.js'

const opts = (hopSeconds = 0) => ({ ...TOY_MEMORY, hopSeconds })

function catchError(fn: () => unknown): PlacementError {
  try {
    fn()
  } catch (e) {
    expect(e).toBeInstanceOf(PlacementError)
    return e as PlacementError
  }
  throw new Error('expected a PlacementError')
}

describe('planPlacement', () => {
  it('prefers throughput by default', () => {
    const peers = [peer('slow', PLENTY, 1), peer('fast', PLENTY, 3)]
    const plan = planPlacement(toyConfig(), peers, opts())
    expect(plan.strategy).toBe('throughput')
    expect(plan.bottleneckSecondsPerToken).toBeCloseTo(1, 12)
  })

  it.each(['uniform', 'memory', 'throughput'] as const)(
    'uses the preferred strategy %s when it fits',
    (strategy) => {
      const peers = [peer('a', PLENTY, 1), peer('b', PLENTY, 1)]
      expect(planPlacement(toyConfig(), peers, { ...opts(), strategy }).strategy).toBe(strategy)
    },
  )

  it('tries the preferred strategy first, then throughput, memory, uniform in that order', () => {
    expect(strategyOrder('throughput')).toEqual(['throughput', 'memory', 'uniform'])
    expect(strategyOrder('memory')).toEqual(['memory', 'throughput', 'uniform'])
    expect(strategyOrder('uniform')).toEqual(['uniform', 'throughput', 'memory'])
  })

  it('falls back when the preferred strategy does not fit', () => {
    // Uniform gives 'a' two layers plus embeddings; it only holds one. Memory weighting gives the
    // tiny peers a layer each they cannot hold. The throughput search finds a:0-1, b:1-4.
    const peers = [peer('a', TOY_EMBED + TOY_LAYER, 1), peer('b', PLENTY, 1)]
    expect(planPlacement(toyConfig(), peers, { ...opts(), strategy: 'uniform' }).strategy).toBe('throughput')
    const lopsided = [peer('big', 10_000, 1), peer('s1', 100, 1), peer('s2', 100, 1)]
    expect(planPlacement(toyConfig(), lopsided, { ...opts(), strategy: 'memory' }).strategy).toBe(
      'throughput',
    )
  })

  it('reports every strategy it tried, in order, when none fits', () => {
    const err = catchError(() => planPlacement(toyConfig(), [peer('a', 500, 1), peer('b', 500, 1)], opts()))
    expect(err.code).toBe('ERR_PLACEMENT_NO_CAPACITY')
    const at = (s: string) => err.message.indexOf(`${s}: `)
    expect(at('throughput')).toBeGreaterThan(0)
    expect(at('memory')).toBeGreaterThan(at('throughput'))
    expect(at('uniform')).toBeGreaterThan(at('memory'))
  })

  it('says how much memory the mesh has and the model needs', () => {
    const config = toyConfig()
    const need = stageMemoryBytes(config, 0, 4, TOY_MEMORY)
    const err = catchError(() =>
      planPlacement(config, [peer('a', 300, 1), peer('b', 200, 1), peer('dead', PLENTY, 0)], opts()),
    )
    expect(err.code).toBe('ERR_PLACEMENT_NO_CAPACITY')
    expect(err.availableBytes).toBe(500)
    expect(err.requiredBytes).toBe(need)
    expect(err.message).toContain(
      'the mesh has 500 B across 2 usable peers (1 without memory or throughput skipped)',
    )
    expect(err.message).toContain(`the model needs at least ${formatBytes(need)}`)
    expect(err.message).toContain(`short by ${formatBytes(need - 500)}`)
  })

  it('says when the mesh has enough memory in total but no peer can hold its part', () => {
    // Eight peers of 279 bytes: plenty in total, but not one layer fits anywhere.
    const peers = Array.from({ length: 8 }, (_, i) => peer(`p${i}`, TOY_LAYER - 1, 1))
    const err = catchError(() => planPlacement(toyConfig(), peers, opts()))
    expect(err.availableBytes).toBe(8 * (TOY_LAYER - 1))
    expect(err.message).toContain('enough in total, but no split gives every peer a range it can hold')
  })

  it('fails with no capacity for an empty mesh and is a ButterflyError with a stable wire form', () => {
    const err = catchError(() => planPlacement(toyConfig(), [], opts()))
    expect(err).toBeInstanceOf(ButterflyError)
    expect(err.toJSON()).toEqual({
      name: 'PlacementError',
      code: 'ERR_PLACEMENT_NO_CAPACITY',
      message: err.message,
    })
    expect(err.message).toContain('the mesh has 0 B across 0 usable peers')
  })

  const good = peer('ok', PLENTY, 1)
  it.each<[string, unknown]>([
    ['negative memory', [peer('a', -1, 1)]],
    ['NaN memory', [peer('a', Number.NaN, 1)]],
    ['infinite memory', [peer('a', Number.POSITIVE_INFINITY, 1)]],
    ['string memory', [{ ...good, memoryBytes: '1000' }]],
    ['negative throughput', [peer('a', PLENTY, -0.5)]],
    ['NaN throughput', [peer('a', PLENTY, Number.NaN)]],
    ['infinite throughput', [peer('a', PLENTY, Number.POSITIVE_INFINITY)]],
    ['missing throughput', [{ id: 'a', memoryBytes: 1, backend: 'cpu' }]],
    ['duplicate ids', [good, peer('b', 1, 1), { ...good }]],
    ['empty id', [peer('', PLENTY, 1)]],
    ['numeric id', [{ ...good, id: 7 }]],
    ['unknown backend', [{ ...good, backend: 'tpu' }]],
    ['null peer', [good, null]],
    // biome-ignore lint/suspicious/noSparseArray: a hole is exactly the malformed input under test
    ['a hole in the array', [good, , peer('b', 1, 1)]],
    ['peers not an array', { 0: good, length: 1 }],
  ])('rejects %s with ERR_PLACEMENT_INPUT', (_, peers) => {
    const err = catchError(() => planPlacement(toyConfig(), peers as PeerCapacity[], opts()))
    expect(err.code).toBe('ERR_PLACEMENT_INPUT')
  })

  it.each<[string, object]>([
    ['an unknown strategy', { strategy: 'fastest' }],
    ['a negative hop cost', { hopSeconds: -0.1 }],
    ['a NaN hop cost', { hopSeconds: Number.NaN }],
    ['a KV context past maxContext', { kvContext: 1000 }],
    ['zero bytes per weight', { bytesPerParam: 0 }],
  ])('rejects %s with ERR_PLACEMENT_INPUT', (_, bad) => {
    const err = catchError(() => planPlacement(toyConfig(), [good], { ...opts(), ...bad }))
    expect(err.code).toBe('ERR_PLACEMENT_INPUT')
  })

  it('is deterministic: the same mesh in any order gives the same plan', () => {
    const rand = seededRandom(7)
    const config = toyConfig({ numLayers: 16 })
    const peers = Array.from({ length: 12 }, (_, i) => peer(`n${i}`, 500 + rand() * 4000, 0.5 + rand() * 5))
    for (const strategy of ['uniform', 'memory', 'throughput'] as const) {
      const o = { ...opts(0.05), strategy }
      const first = planPlacement(config, peers, o)
      for (let trial = 0; trial < 5; trial++) {
        const shuffled = [...peers].sort(() => rand() - 0.5)
        expect(planPlacement(config, shuffled, o)).toEqual(first)
      }
    }
  })

  it('returns frozen plans', () => {
    const plan = planPlacement(toyConfig(), [peer('a', PLENTY, 1)], opts())
    expect(Object.isFrozen(plan)).toBe(true)
    expect(Object.isFrozen(plan.stages)).toBe(true)
    expect(Object.isFrozen(plan.stages[0])).toBe(true)
  })
})

describe('PlanCache', () => {
  const config = toyConfig()
  const mesh = [peer('a', PLENTY, 1), peer('b', PLENTY, 2)]

  it('answers a repeated request from the cache, whatever the peer order or defaulted options', () => {
    const cache = new PlanCache()
    const first = cache.plan(config, mesh, { ...TOY_MEMORY })
    expect(cache.plan({ ...config }, [...mesh].reverse(), { ...TOY_MEMORY, hopSeconds: 0.002 })).toBe(first)
    expect(cache.plan(config, mesh, { ...TOY_MEMORY, strategy: 'throughput' })).toBe(first)
    expect(cache.hits).toBe(2)
    expect(cache.misses).toBe(1)
    expect(cache.size).toBe(1)
  })

  it('misses when the model, a capacity or an option changes', () => {
    const cache = new PlanCache()
    cache.plan(config, mesh, TOY_MEMORY)
    cache.plan(toyConfig({ numLayers: 5 }), mesh, TOY_MEMORY)
    cache.plan(
      config,
      [mesh[0] as PeerCapacity, { ...(mesh[1] as PeerCapacity), tokensPerSec: 3 }],
      TOY_MEMORY,
    )
    cache.plan(
      config,
      [mesh[0] as PeerCapacity, { ...(mesh[1] as PeerCapacity), backend: 'webgpu' }],
      TOY_MEMORY,
    )
    cache.plan(config, mesh, { ...TOY_MEMORY, hopSeconds: 0.5 })
    cache.plan(config, mesh, { ...TOY_MEMORY, strategy: 'uniform' })
    expect(cache.misses).toBe(6)
    expect(cache.hits).toBe(0)
    expect(new Set([planCacheKey(config, mesh, TOY_MEMORY), planCacheKey(config, mesh, {})]).size).toBe(2)
  })

  it('evicts the least recently used plan', () => {
    const cache = new PlanCache({ maxEntries: 2 })
    const ask = (hopSeconds: number) => cache.plan(config, mesh, { ...TOY_MEMORY, hopSeconds })
    const a = ask(0)
    ask(0.1)
    expect(ask(0)).toBe(a) // a is now the most recent
    ask(0.2) // evicts 0.1
    expect(cache.size).toBe(2)
    const misses = cache.misses
    expect(ask(0)).toBe(a)
    expect(cache.misses).toBe(misses)
    ask(0.1)
    expect(cache.misses).toBe(misses + 1)
  })

  it('does not cache failures', () => {
    const cache = new PlanCache()
    expect(() => cache.plan(config, [], TOY_MEMORY)).toThrow(PlacementError)
    expect(() => cache.plan(config, [], TOY_MEMORY)).toThrow(PlacementError)
    expect(cache.size).toBe(0)
    expect(cache.misses).toBe(2)
  })

  it('rejects invalid input before touching the cache', () => {
    const cache = new PlanCache()
    expect(() => cache.plan(config, [peer('a', -5, 1)], TOY_MEMORY)).toThrow(
      expect.objectContaining({ code: 'ERR_PLACEMENT_INPUT' }),
    )
    expect(cache.misses).toBe(0)
  })

  it.each([0, -1, 1.5, Number.NaN])('rejects maxEntries %s', (maxEntries) => {
    expect(() => new PlanCache({ maxEntries })).toThrow(
      expect.objectContaining({ code: 'ERR_PLACEMENT_INPUT' }),
    )
  })

  it('clear() empties it', () => {
    const cache = new PlanCache()
    cache.plan(config, mesh, TOY_MEMORY)
    cache.clear()
    expect(cache.size).toBe(0)
    cache.plan(config, mesh, TOY_MEMORY)
    expect(cache.misses).toBe(2)
  })
})
