import { expect } from 'vitest'
import type { ModelConfig } from '../src/model/model-config.js'
import type { PeerBackend, PeerCapacity } from '../src/placement/peer-capacity.js'
import type { Plan } from '../src/placement/plan.js'
import { stageMemoryBytes } from '../src/placement/stage-memory.js'

/**
 * A model small enough to price by hand. With TOY_MEMORY (1 byte per weight, 8 tokens of KV, no
 * overhead): a layer is 152 weights + 128 KV bytes = 280 bytes, embeddings 40, norm + head 44.
 */
export function toyConfig(overrides: Partial<ModelConfig> = {}): ModelConfig {
  return {
    architecture: 'llama',
    hiddenSize: 4,
    numLayers: 4,
    numHeads: 2,
    numKvHeads: 1,
    headDim: 2,
    intermediateSize: 8,
    vocabSize: 10,
    ropeTheta: 10_000,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: false,
    maxContext: 8,
    attentionBias: false,
    bosTokenId: undefined,
    eosTokenId: undefined,
    ...overrides,
  }
}

export const TOY_MEMORY = { bytesPerParam: 1, kvContext: 8, overheadBytes: 0 } as const
export const TOY_LAYER = 280
export const TOY_EMBED = 40
export const TOY_HEAD = 44
/** Memory no toy plan can exhaust. */
export const PLENTY = 1e9

export function peer(
  id: string,
  memoryBytes: number,
  tokensPerSec: number,
  backend: PeerBackend = 'cpu',
): PeerCapacity {
  return { id, memoryBytes, tokensPerSec, backend }
}

export interface MemoryOpts {
  bytesPerParam: number
  kvContext: number
  overheadBytes: number
}

/** Slowest stage plus a hop cost per hop, recomputed from scratch. */
export function planCost(stages: Plan['stages'], peers: readonly PeerCapacity[], hopSeconds: number): number {
  let slowest = 0
  for (const s of stages) {
    const p = peers.find((q) => q.id === s.peerId)
    if (p === undefined) throw new Error(`unknown peer ${s.peerId}`)
    slowest = Math.max(slowest, (s.end - s.start) / p.tokensPerSec)
  }
  return slowest + hopSeconds * (stages.length - 1)
}

/** Every invariant a plan must meet, asserted. */
export function expectValidPlan(
  plan: Plan,
  config: ModelConfig,
  peers: readonly PeerCapacity[],
  opts: MemoryOpts & { hopSeconds: number },
): void {
  expect(plan.stages.length).toBeGreaterThan(0)
  expect(plan.stages[0]?.start).toBe(0)
  expect(plan.stages.at(-1)?.end).toBe(config.numLayers)
  const ids = new Set<string>()
  let at = 0
  for (const s of plan.stages) {
    expect(s.start).toBe(at)
    expect(s.end).toBeGreaterThan(s.start)
    expect(ids.has(s.peerId)).toBe(false)
    ids.add(s.peerId)
    const p = peers.find((q) => q.id === s.peerId)
    expect(p).toBeDefined()
    expect(p?.tokensPerSec ?? 0).toBeGreaterThan(0)
    expect(stageMemoryBytes(config, s.start, s.end, opts)).toBeLessThanOrEqual(p?.memoryBytes ?? -1)
    at = s.end
  }
  const cost = planCost(plan.stages, peers, opts.hopSeconds)
  expect(Math.abs(plan.bottleneckSecondsPerToken - cost)).toBeLessThanOrEqual(1e-12 * Math.max(1, cost))
}

/**
 * The least cost of any plan, by trying every ordered subset of peers and every split of the
 * layers into that many non-empty contiguous ranges. Infinity if nothing fits. Small inputs only.
 */
export function bruteForceBestCost(
  config: ModelConfig,
  peers: readonly PeerCapacity[],
  opts: MemoryOpts & { hopSeconds: number },
): number {
  const L = config.numLayers
  const usable = peers.filter((p) => p.memoryBytes > 0 && p.tokensPerSec > 0)
  let best = Number.POSITIVE_INFINITY
  const order: PeerCapacity[] = []
  const used = new Set<number>()
  const tryCounts = (counts: number[]) => {
    let start = 0
    let slowest = 0
    for (let i = 0; i < counts.length; i++) {
      const n = counts[i] as number
      const p = order[i] as PeerCapacity
      if (stageMemoryBytes(config, start, start + n, opts) > p.memoryBytes) return
      slowest = Math.max(slowest, n / p.tokensPerSec)
      start += n
    }
    best = Math.min(best, slowest + opts.hopSeconds * (counts.length - 1))
  }
  const splits = (k: number, left: number, acc: number[]) => {
    if (acc.length === k - 1) {
      tryCounts([...acc, left])
      return
    }
    for (let n = 1; n <= left - (k - 1 - acc.length); n++) splits(k, left - n, [...acc, n])
  }
  const extend = () => {
    if (order.length > 0 && order.length <= L) splits(order.length, L, [])
    if (order.length === Math.min(usable.length, L)) return
    usable.forEach((p, i) => {
      if (used.has(i)) return
      used.add(i)
      order.push(p)
      extend()
      order.pop()
      used.delete(i)
    })
  }
  extend()
  return best
}
