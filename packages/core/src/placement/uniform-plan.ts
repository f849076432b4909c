import { uniformPartition } from '../engine/partition.js'
import type { ModelConfig } from '../model/model-config.js'
import { type PeerCapacity, usablePeers, validatePeers } from './peer-capacity.js'
import {
  type PlacementOptions,
  type ResolvedPlacementOptions,
  resolvePlacementOptions,
} from './placement-options.js'
import { assertStagesFit, makePlan, noCapacity, type Plan } from './plan.js'

/**
 * One stage per usable peer (in id order) up to one per layer, with equal layer counts. Throws
 * PlacementError ERR_PLACEMENT_NO_CAPACITY if any peer lacks the memory for its range.
 */
export function uniformPlan(
  config: ModelConfig,
  peers: readonly PeerCapacity[],
  options?: PlacementOptions,
): Plan {
  const resolved = resolvePlacementOptions(config, options)
  return placeUniform(usablePeers(validatePeers(peers)), resolved)
}

/** uniformPlan over peers already validated, filtered to usable ones and sorted by id. */
export function placeUniform(usable: readonly PeerCapacity[], options: ResolvedPlacementOptions): Plan {
  const { memory } = options
  if (usable.length === 0) throw noCapacity('uniform: no peer has both memory and throughput')
  const used = usable.slice(0, Math.min(usable.length, memory.numLayers))
  const counts = uniformPartition(memory.numLayers, used.length).map((r) => r.end - r.start)
  assertStagesFit('uniform', memory, used, counts)
  return makePlan('uniform', used, counts, options.hopSeconds)
}
