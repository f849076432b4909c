import { ButterflyError, PlacementError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import { placeMemoryWeighted } from './memory-weighted-plan.js'
import { type PeerCapacity, usablePeers, validatePeers } from './peer-capacity.js'
import {
  PLACEMENT_STRATEGIES,
  type PlacementOptions,
  type PlacementStrategy,
  type ResolvedPlacementOptions,
  resolvePlacementOptions,
} from './placement-options.js'
import { formatBytes, type Plan } from './plan.js'
import { rangeBytes } from './stage-memory.js'
import { placeThroughput } from './throughput-plan.js'
import { placeUniform } from './uniform-plan.js'

const PLACERS: Readonly<
  Record<PlacementStrategy, (usable: readonly PeerCapacity[], options: ResolvedPlacementOptions) => Plan>
> = {
  throughput: placeThroughput,
  memory: placeMemoryWeighted,
  uniform: placeUniform,
}

/** The preferred strategy first, then the rest in the order throughput, memory, uniform. */
export function strategyOrder(preferred: PlacementStrategy): PlacementStrategy[] {
  return [preferred, ...PLACEMENT_STRATEGIES.filter((s) => s !== preferred)]
}

/**
 * Places `config` on `peers` with options.strategy (default throughput), falling back through the
 * others in the order throughput → memory → uniform. The throughput search covers every
 * arrangement the other two can produce, so when it is preferred the fallbacks only guard against
 * the unexpected. Peers with no memory or no throughput are never given a stage.
 *
 * Throws PlacementError: ERR_PLACEMENT_INPUT for an invalid peer or option, ERR_PLACEMENT_NO_CAPACITY
 * when no strategy fits (its message and fields give the mesh's memory against the model's need).
 */
export function planPlacement(
  config: ModelConfig,
  peers: readonly PeerCapacity[],
  options: PlacementOptions = {},
): Plan {
  const resolved = resolvePlacementOptions(config, options)
  const usable = usablePeers(validatePeers(peers))
  const reasons: string[] = []
  for (const strategy of strategyOrder(resolved.strategy)) {
    try {
      return PLACERS[strategy](usable, resolved)
    } catch (err) {
      if (!(err instanceof ButterflyError) || err.code !== 'ERR_PLACEMENT_NO_CAPACITY') throw err
      reasons.push(err.message)
    }
  }
  throw noCapacityError(usable, peers.length, resolved, reasons)
}

function noCapacityError(
  usable: readonly PeerCapacity[],
  peerCount: number,
  { memory }: ResolvedPlacementOptions,
  reasons: readonly string[],
): PlacementError {
  const available = usable.reduce((sum, p) => sum + p.memoryBytes, 0)
  const largest = usable.reduce((max, p) => Math.max(max, p.memoryBytes), 0)
  // One stage is the least memory any plan needs: every extra stage adds its overhead (and a
  // second copy of a tied head table).
  const required = rangeBytes(memory, true, true, memory.numLayers)
  const skipped = peerCount - usable.length
  const mesh =
    `the mesh has ${formatBytes(available)} across ${usable.length} usable peer${usable.length === 1 ? '' : 's'}` +
    (skipped > 0 ? ` (${skipped} without memory or throughput skipped)` : '') +
    (usable.length > 0 ? `, the largest ${formatBytes(largest)}` : '')
  const need =
    `the model needs at least ${formatBytes(required)} (${memory.numLayers} layers at ` +
    `${formatBytes(memory.layerBytes)} each with KV cache, embeddings ${formatBytes(memory.embedBytes)}, ` +
    `head ${formatBytes(memory.headBytesWhenFirst)}, ${formatBytes(memory.overheadBytes)} overhead per stage)`
  const why =
    available >= required
      ? 'enough in total, but no split gives every peer a range it can hold'
      : `short by ${formatBytes(required - available)}`
  return new PlacementError(
    'ERR_PLACEMENT_NO_CAPACITY',
    `no placement fits: ${mesh}; ${need}; ${why}. ${reasons.join('; ')}`,
    {
      availableBytes: available,
      requiredBytes: required,
    },
  )
}
