import { PlacementError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import { type StageMemoryModel, type StageMemoryOptions, stageMemoryModel } from './stage-memory.js'

export type PlacementStrategy = 'uniform' | 'memory' | 'throughput'

export const PLACEMENT_STRATEGIES: readonly PlacementStrategy[] = ['throughput', 'memory', 'uniform']

export interface PlacementOptions extends StageMemoryOptions {
  /** Strategy tried first; the others follow in the order throughput, memory, uniform. Default throughput. */
  readonly strategy?: PlacementStrategy
  /**
   * Seconds each hop between consecutive stages adds to every token (serialisation plus network).
   * Charged per hop so a peer that barely shortens the slowest stage is not worth adding. Default 2 ms.
   */
  readonly hopSeconds?: number
}

export const DEFAULT_HOP_SECONDS = 0.002

/** Options with every default filled in and checked, plus the byte costs they imply. */
export interface ResolvedPlacementOptions {
  readonly strategy: PlacementStrategy
  readonly hopSeconds: number
  readonly memory: StageMemoryModel
  /** Canonical form for cache keys: equal options, written or defaulted, give equal keys. */
  readonly key: string
}

export function resolvePlacementOptions(
  config: ModelConfig,
  options: PlacementOptions = {},
): ResolvedPlacementOptions {
  if (typeof options !== 'object' || options === null) {
    throw new PlacementError('ERR_PLACEMENT_INPUT', `options must be an object, got ${String(options)}`)
  }
  const strategy = options.strategy ?? 'throughput'
  if (!PLACEMENT_STRATEGIES.includes(strategy)) {
    throw new PlacementError(
      'ERR_PLACEMENT_INPUT',
      `strategy must be one of ${PLACEMENT_STRATEGIES.join(', ')}, got ${String(strategy)}`,
    )
  }
  const hopSeconds = options.hopSeconds ?? DEFAULT_HOP_SECONDS
  if (typeof hopSeconds !== 'number' || !Number.isFinite(hopSeconds) || hopSeconds < 0) {
    throw new PlacementError(
      'ERR_PLACEMENT_INPUT',
      `hopSeconds must be a non-negative finite number, got ${String(hopSeconds)}`,
    )
  }
  const memory = stageMemoryModel(config, options)
  const key = JSON.stringify([
    strategy,
    hopSeconds,
    memory.layerBytes,
    memory.embedBytes,
    memory.headBytes,
    memory.headBytesWhenFirst,
    memory.overheadBytes,
  ])
  return { strategy, hopSeconds, memory, key }
}
