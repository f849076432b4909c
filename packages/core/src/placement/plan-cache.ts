import { PlacementError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import { validateModelConfig } from '../model/validate-model-config.js'
import { type PeerCapacity, validatePeers } from './peer-capacity.js'
import { type PlacementOptions, resolvePlacementOptions } from './placement-options.js'
import type { Plan } from './plan.js'
import { planPlacement } from './plan-placement.js'

export interface PlanCacheOptions {
  /** Plans kept; the least recently used goes first. Default 64. */
  readonly maxEntries?: number
}

/**
 * Remembers plans by (model config, peer capacities sorted by id, options with defaults filled in),
 * so re-planning when the mesh has not changed costs a key build. Configs are compared by content,
 * not by object identity, as each peer parses its own copy. Failures are not cached: a peer that
 * joins later can make the same request succeed. Plans are frozen, so sharing them is safe.
 */
export class PlanCache {
  readonly maxEntries: number
  private readonly entries = new Map<string, Plan>()
  private hitCount = 0
  private missCount = 0

  constructor(options: PlanCacheOptions = {}) {
    const max = options.maxEntries ?? 64
    if (!Number.isInteger(max) || max < 1) {
      throw new PlacementError(
        'ERR_PLACEMENT_INPUT',
        `maxEntries must be a positive integer, got ${String(max)}`,
      )
    }
    this.maxEntries = max
  }

  get size(): number {
    return this.entries.size
  }

  get hits(): number {
    return this.hitCount
  }

  get misses(): number {
    return this.missCount
  }

  /** planPlacement, answered from the cache when the same request was planned before. */
  plan(config: ModelConfig, peers: readonly PeerCapacity[], options: PlacementOptions = {}): Plan {
    const key = planCacheKey(config, peers, options)
    const cached = this.entries.get(key)
    if (cached !== undefined) {
      this.hitCount++
      // Re-inserting moves the entry to the back of Map's insertion order: most recently used.
      this.entries.delete(key)
      this.entries.set(key, cached)
      return cached
    }
    this.missCount++
    const plan = planPlacement(config, peers, options)
    this.entries.set(key, plan)
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next()
      if (oldest.done !== true) this.entries.delete(oldest.value)
    }
    return plan
  }

  clear(): void {
    this.entries.clear()
  }
}

/** The cache key: validates its inputs, so a key always names a well-formed request. */
export function planCacheKey(
  config: ModelConfig,
  peers: readonly PeerCapacity[],
  options: PlacementOptions = {},
): string {
  const c = validateModelConfig(config)
  const resolved = resolvePlacementOptions(c, options)
  const model = [
    c.architecture,
    c.hiddenSize,
    c.numLayers,
    c.numHeads,
    c.numKvHeads,
    c.headDim,
    c.intermediateSize,
    c.vocabSize,
    c.ropeTheta,
    c.rmsNormEps,
    c.tieWordEmbeddings,
    c.maxContext,
    c.attentionBias,
    c.bosTokenId ?? null,
    c.eosTokenId ?? null,
  ]
  const mesh = validatePeers(peers).map((p) => [p.id, p.memoryBytes, p.tokensPerSec, p.backend])
  return JSON.stringify([model, mesh, resolved.key])
}
