import { ButterflyError } from '../errors.js'

/** A contiguous layer range [start, end). */
export interface LayerRange {
  readonly start: number
  readonly end: number
}

/**
 * Cuts `numLayers` into `stages` contiguous ranges whose sizes differ by at most one
 * (earlier stages take the remainder, since stage 0 also embeds and is rarely the slowest).
 */
export function uniformPartition(numLayers: number, stages: number): LayerRange[] {
  if (!Number.isInteger(stages) || stages < 1) {
    throw new ButterflyError('ERR_PARTITION', `stage count must be a positive integer, got ${stages}`)
  }
  if (stages > numLayers) {
    throw new ButterflyError('ERR_PARTITION', `cannot cut ${numLayers} layers into ${stages} stages`)
  }
  const base = Math.floor(numLayers / stages)
  const extra = numLayers % stages
  const ranges: LayerRange[] = []
  let start = 0
  for (let i = 0; i < stages; i++) {
    const end = start + base + (i < extra ? 1 : 0)
    ranges.push({ start, end })
    start = end
  }
  return ranges
}
