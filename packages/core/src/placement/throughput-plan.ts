import type { ModelConfig } from '../model/model-config.js'
import { CoverSolver, type PeerLimits } from './cover-solver.js'
import { type PeerCapacity, usablePeers, validatePeers } from './peer-capacity.js'
import {
  type PlacementOptions,
  type ResolvedPlacementOptions,
  resolvePlacementOptions,
} from './placement-options.js'
import { makePlan, noCapacity, type Plan } from './plan.js'
import { maxLayersInMemory } from './stage-memory.js'

/**
 * The plan with the lowest bottleneckSecondsPerToken (slowest stage + hopSeconds per hop) over
 * every ordered subset of peers and every split into contiguous ranges that fits in memory.
 *
 * How: the slowest stage always takes exactly n / tokensPerSec for some peer and some n ≤ layers,
 * so the optimum is one of those P × L values. For a candidate bottleneck t, CoverSolver finds the
 * fewest stages that fit (O(P log P)). The fewest stages only drop as t grows, so one binary search
 * finds the least feasible t; with a hop cost, each smaller stage count k gets its own binary search,
 * over only the t that could still beat the best cost so far. A few ms for 100 peers × 80 layers.
 */
export function throughputPlan(
  config: ModelConfig,
  peers: readonly PeerCapacity[],
  options?: PlacementOptions,
): Plan {
  const resolved = resolvePlacementOptions(config, options)
  return placeThroughput(usablePeers(validatePeers(peers)), resolved)
}

/** throughputPlan over peers already validated, filtered to usable ones and sorted by id. */
export function placeThroughput(usable: readonly PeerCapacity[], options: ResolvedPlacementOptions): Plan {
  const { memory, hopSeconds } = options
  const L = memory.numLayers
  if (usable.length === 0) throw noCapacity('throughput: no peer has both memory and throughput')
  const limits = peerLimits(usable, options)
  const cands = candidateBottlenecks(limits, L)
  const solver = new CoverSolver(limits, L)
  const stagesAt = (i: number): number => {
    solver.prepare(cands[i] as number)
    return solver.minStages()
  }
  const lastIdx = cands.length - 1
  if (lastIdx < 0 || stagesAt(lastIdx) === Number.POSITIVE_INFINITY) {
    throw noCapacity(`throughput: no arrangement of the ${usable.length} usable peers fits in memory`)
  }
  let best = firstIndex(0, lastIdx, (i) => stagesAt(i) < Number.POSITIVE_INFINITY)
  let bestK = stagesAt(best)
  let bestCost = (cands[best] as number) + hopSeconds * (bestK - 1)
  if (hopSeconds > 0) {
    // Bottlenecks only rise as stages are taken away, so `lo` carries over from k + 1 to k.
    let lo = best
    for (let k = bestK - 1; k >= 1; k--) {
      const hi = lastIndexAtMost(cands, bestCost - hopSeconds * (k - 1))
      if (hi < lo) continue
      if (stagesAt(hi) > k) {
        lo = hi + 1
        continue
      }
      const i = firstIndex(lo, hi, (j) => stagesAt(j) <= k)
      const got = stagesAt(i)
      const cost = (cands[i] as number) + hopSeconds * (got - 1)
      // Ties go to fewer stages: fewer hops, fewer peers to lose.
      if (cost <= bestCost) {
        best = i
        bestK = got
        bestCost = cost
      }
      lo = i
      k = got
    }
  }
  solver.prepare(cands[best] as number)
  const choice = solver.choose(bestK)
  const chosen = choice.peers.map((p) => usable[p] as PeerCapacity)
  const counts = trimToLayers(choice.caps, chosen, L)
  return makePlan('throughput', chosen, counts, hopSeconds)
}

function peerLimits(usable: readonly PeerCapacity[], { memory }: ResolvedPlacementOptions): PeerLimits {
  const p = usable.length
  const limits = {
    tps: new Float64Array(p),
    first: new Int32Array(p),
    mid: new Int32Array(p),
    last: new Int32Array(p),
    only: new Int32Array(p),
  }
  usable.forEach((peer, i) => {
    limits.tps[i] = peer.tokensPerSec
    limits.first[i] = maxLayersInMemory(memory, true, false, peer.memoryBytes)
    limits.mid[i] = maxLayersInMemory(memory, false, false, peer.memoryBytes)
    limits.last[i] = maxLayersInMemory(memory, false, true, peer.memoryBytes)
    limits.only[i] = maxLayersInMemory(memory, true, true, peer.memoryBytes)
  })
  return limits
}

/** Every n / tokensPerSec a stage could take, for n up to what the peer's memory holds; sorted, unique. */
function candidateBottlenecks(limits: PeerLimits, numLayers: number): Float64Array {
  let total = 0
  for (const m of limits.mid) total += Math.min(m, numLayers)
  const all = new Float64Array(total)
  let at = 0
  limits.tps.forEach((tps, p) => {
    const upto = Math.min(limits.mid[p] as number, numLayers)
    for (let n = 1; n <= upto; n++) all[at++] = n / tps
  })
  all.sort()
  let unique = 0
  for (let i = 0; i < all.length; i++) {
    if (i === 0 || all[i] !== all[unique - 1]) all[unique++] = all[i] as number
  }
  return all.subarray(0, unique)
}

/** Smallest i in [lo, hi] with ok(i), given ok(hi) and ok monotone. */
function firstIndex(lo: number, hi: number, ok: (i: number) => boolean): number {
  let a = lo
  let b = hi
  while (a < b) {
    const mid = (a + b) >> 1
    if (ok(mid)) b = mid
    else a = mid + 1
  }
  return a
}

function lastIndexAtMost(sorted: Float64Array, limit: number): number {
  let a = 0
  let b = sorted.length
  while (a < b) {
    const mid = (a + b) >> 1
    if ((sorted[mid] as number) <= limit) a = mid + 1
    else b = mid
  }
  return a - 1
}

/**
 * Turns caps (which sum to at least `total`, each ≥ 1) into layer counts summing to `total`, by
 * repeatedly taking a layer from the slowest stage that has more than one, so the spare capacity
 * goes to evening out stage times. Ties take from later stages, as uniformPartition gives earlier
 * stages the remainder.
 */
function trimToLayers(caps: readonly number[], peers: readonly PeerCapacity[], total: number): number[] {
  const counts = [...caps]
  const time = (i: number) => (counts[i] as number) / (peers[i] as PeerCapacity).tokensPerSec
  const before = (i: number, j: number) => time(i) > time(j) || (time(i) === time(j) && i > j)
  const heap = counts.map((_, i) => i).filter((i) => (counts[i] as number) > 1)
  const swap = (i: number, j: number) => {
    const t = heap[i] as number
    heap[i] = heap[j] as number
    heap[j] = t
  }
  const down = (start: number) => {
    let i = start
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let top = i
      if (l < heap.length && before(heap[l] as number, heap[top] as number)) top = l
      if (r < heap.length && before(heap[r] as number, heap[top] as number)) top = r
      if (top === i) return
      swap(i, top)
      i = top
    }
  }
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) down(i)
  let excess = counts.reduce((x, y) => x + y, 0) - total
  while (excess > 0 && heap.length > 0) {
    const s = heap[0] as number
    counts[s] = (counts[s] as number) - 1
    excess--
    if ((counts[s] as number) <= 1) {
      heap[0] = heap[heap.length - 1] as number
      heap.pop()
    }
    down(0)
  }
  return counts
}
