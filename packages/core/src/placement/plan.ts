import { PlacementError } from '../errors.js'
import type { PeerCapacity } from './peer-capacity.js'
import type { PlacementStrategy } from './placement-options.js'
import { rangeBytes, type StageMemoryModel } from './stage-memory.js'

/** One pipeline stage: layers [start, end) on one peer. */
export interface PlanStage {
  readonly start: number
  readonly end: number
  readonly peerId: string
}

/**
 * Stages in pipeline order, covering every layer exactly once. `bottleneckSecondsPerToken` is the
 * slowest stage's compute time per token (its layers / its peer's tokensPerSec) plus hopSeconds for
 * each hop between stages: the figure every strategy is compared by, and the one the throughput
 * strategy minimises.
 */
export interface Plan {
  readonly stages: readonly PlanStage[]
  readonly strategy: PlacementStrategy
  readonly bottleneckSecondsPerToken: number
}

/** Builds a frozen plan (plans are shared through PlanCache) from per-stage layer counts. */
export function makePlan(
  strategy: PlacementStrategy,
  peers: readonly PeerCapacity[],
  layerCounts: readonly number[],
  hopSeconds: number,
): Plan {
  const stages: PlanStage[] = []
  let start = 0
  let slowest = 0
  peers.forEach((peer, i) => {
    const n = layerCounts[i] ?? 0
    stages.push(Object.freeze({ start, end: start + n, peerId: peer.id }))
    slowest = Math.max(slowest, n / peer.tokensPerSec)
    start += n
  })
  return Object.freeze({
    stages: Object.freeze(stages),
    strategy,
    bottleneckSecondsPerToken: slowest + hopSeconds * (stages.length - 1),
  })
}

/**
 * Index of the first stage whose range does not fit its peer's memory, or -1. Used by the
 * strategies that pick ranges without looking at memory first.
 */
export function firstOverfullStage(
  memory: StageMemoryModel,
  peers: readonly PeerCapacity[],
  layerCounts: readonly number[],
): number {
  let start = 0
  for (let i = 0; i < peers.length; i++) {
    const n = layerCounts[i] ?? 0
    const end = start + n
    const need = rangeBytes(memory, start === 0, end === memory.numLayers, n)
    if (need > (peers[i]?.memoryBytes ?? 0)) return i
    start = end
  }
  return -1
}

/** Error a strategy throws when it cannot place the model; planPlacement catches it to fall back. */
/** Throws ERR_PLACEMENT_NO_CAPACITY naming the first peer whose layers do not fit its memory. */
export function assertStagesFit(
  strategy: PlacementStrategy,
  memory: StageMemoryModel,
  used: readonly PeerCapacity[],
  counts: readonly number[],
): void {
  const bad = firstOverfullStage(memory, used, counts)
  if (bad < 0) return
  const start = counts.slice(0, bad).reduce((a, b) => a + b, 0)
  const n = counts[bad] ?? 0
  const need = rangeBytes(memory, start === 0, start + n === memory.numLayers, n)
  const peer = used[bad]
  throw noCapacity(
    `${strategy}: peer ${JSON.stringify(peer?.id)} has ${formatBytes(peer?.memoryBytes ?? 0)} but its layers ` +
      `[${start}, ${start + n}) need ${formatBytes(need)}`,
  )
}

export function noCapacity(message: string): PlacementError {
  return new PlacementError('ERR_PLACEMENT_NO_CAPACITY', message)
}

export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(2)} GiB`
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`
  return `${Math.round(bytes)} B`
}
