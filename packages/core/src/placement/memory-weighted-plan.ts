import type { ModelConfig } from '../model/model-config.js'
import { type PeerCapacity, usablePeers, validatePeers } from './peer-capacity.js'
import {
  type PlacementOptions,
  type ResolvedPlacementOptions,
  resolvePlacementOptions,
} from './placement-options.js'
import { assertStagesFit, makePlan, noCapacity, type Plan } from './plan.js'

/**
 * exo-style: peers sorted by memory (largest first, then id), each given layers in proportion to
 * its memory, at least one each; with more peers than layers only the largest get a stage. Throws
 * PlacementError ERR_PLACEMENT_NO_CAPACITY if a peer cannot hold its share.
 */
export function memoryWeightedPlan(
  config: ModelConfig,
  peers: readonly PeerCapacity[],
  options?: PlacementOptions,
): Plan {
  const resolved = resolvePlacementOptions(config, options)
  return placeMemoryWeighted(usablePeers(validatePeers(peers)), resolved)
}

/** memoryWeightedPlan over peers already validated, filtered to usable ones and sorted by id. */
export function placeMemoryWeighted(
  usable: readonly PeerCapacity[],
  options: ResolvedPlacementOptions,
): Plan {
  const { memory } = options
  if (usable.length === 0) throw noCapacity('memory: no peer has both memory and throughput')
  // Stable sort: equal memory keeps id order.
  const used = [...usable].sort((a, b) => b.memoryBytes - a.memoryBytes).slice(0, memory.numLayers)
  const counts = proportionalCounts(
    used.map((p) => p.memoryBytes),
    memory.numLayers,
  )
  assertStagesFit('memory', memory, used, counts)
  return makePlan('memory', used, counts, options.hopSeconds)
}

/**
 * Splits `total` items in proportion to `weights` (all > 0, at most `total` of them): every
 * share ≥ 1 and the shares sum to `total`. Starts from floor(quota) raised to 1, then moves one
 * item at a time to the share furthest below its quota, or from the one furthest above it, so the
 * result stays as close to proportional as the minimum of one allows. Ties go to the earlier share.
 */
export function proportionalCounts(weights: readonly number[], total: number): number[] {
  // Scaled by the largest weight first so even absurd byte counts cannot overflow the sum.
  const max = weights.reduce((a, b) => Math.max(a, b), 0)
  const scaled = weights.map((w) => w / max)
  const sum = scaled.reduce((a, b) => a + b, 0)
  const quota = scaled.map((w) => (total * w) / sum)
  const counts = quota.map((q) => Math.max(1, Math.floor(q)))
  let assigned = counts.reduce((a, b) => a + b, 0)
  while (assigned !== total) {
    const grow = assigned < total
    let pick = -1
    let pickGap = 0
    counts.forEach((n, i) => {
      if (!grow && n <= 1) return
      const gap = (quota[i] ?? 0) - n
      if (pick < 0 || (grow ? gap > pickGap : gap < pickGap)) {
        pick = i
        pickGap = gap
      }
    })
    counts[pick] = (counts[pick] ?? 0) + (grow ? 1 : -1)
    assigned += grow ? 1 : -1
  }
  return counts
}
