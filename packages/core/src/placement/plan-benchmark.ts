import type { ModelConfig } from '../model/model-config.js'
import type { PeerBackend, PeerCapacity } from './peer-capacity.js'
import type { PlacementOptions } from './placement-options.js'
import { throughputPlan } from './throughput-plan.js'

export interface PlanBenchmarkOptions {
  readonly peers?: number
  readonly layers?: number
  readonly runs?: number
  /** Milliseconds clock; default performance.now where it exists, else Date.now. */
  readonly now?: () => number
}

export interface PlanBenchmarkResult {
  readonly peers: number
  readonly layers: number
  readonly runs: number
  readonly medianMs: number
  readonly minMs: number
  readonly maxMs: number
  /** Stages in the plan found, so a run that silently planned nothing shows. */
  readonly stages: number
}

/** A Llama-70B-shaped config with `layers` layers: the size the 100 × 80 target is stated for. */
export function benchmarkConfig(layers = 80): ModelConfig {
  return {
    architecture: 'llama',
    hiddenSize: 8192,
    numLayers: layers,
    numHeads: 64,
    numKvHeads: 8,
    headDim: 128,
    intermediateSize: 28_672,
    vocabSize: 128_256,
    ropeTheta: 500_000,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: false,
    maxContext: 8192,
    attentionBias: false,
    bosTokenId: undefined,
    eosTokenId: undefined,
  }
}

/** `count` seeded peers from phones to GPU boxes: 2–80 GiB, throughputs spread over two decades. */
export function benchmarkPeers(count: number, seed = 1): PeerCapacity[] {
  let s = seed >>> 0 || 1
  const rand = () => {
    // xorshift32: deterministic on every runtime.
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return s / 2 ** 32
  }
  const backends: PeerBackend[] = ['cpu', 'cuda', 'wasm', 'webgpu']
  return Array.from({ length: count }, (_, i) => ({
    id: `peer-${String(i).padStart(4, '0')}`,
    memoryBytes: Math.round((2 + 78 * rand()) * 2 ** 30),
    tokensPerSec: 10 * 100 ** rand(),
    backend: backends[Math.floor(rand() * backends.length)] ?? 'cpu',
  }))
}

/**
 * Times throughputPlan on `peers` × `layers` (default 100 × 80; goal: median < 50 ms) for
 * `npm run bench`. One untimed warm-up run first, so the median measures optimised code.
 */
export function planBenchmark(options: PlanBenchmarkOptions = {}): PlanBenchmarkResult {
  const peerCount = options.peers ?? 100
  const layers = options.layers ?? 80
  const runs = options.runs ?? 21
  const now = options.now ?? defaultClock()
  const config = benchmarkConfig(layers)
  const peers = benchmarkPeers(peerCount)
  const planOptions: PlacementOptions = { kvContext: 4096, hopSeconds: 0.002 }
  let stages = throughputPlan(config, peers, planOptions).stages.length
  const times: number[] = []
  for (let i = 0; i < Math.max(1, runs); i++) {
    const t0 = now()
    stages = throughputPlan(config, peers, planOptions).stages.length
    times.push(now() - t0)
  }
  times.sort((a, b) => a - b)
  return {
    peers: peerCount,
    layers,
    runs: times.length,
    medianMs: times[times.length >> 1] ?? 0,
    minMs: times[0] ?? 0,
    maxMs: times[times.length - 1] ?? 0,
    stages,
  }
}

function defaultClock(): () => number {
  const perf = (globalThis as { performance?: { now(): number } }).performance
  return perf === undefined ? () => Date.now() : () => perf.now()
}
