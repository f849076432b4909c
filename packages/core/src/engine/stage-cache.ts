import type { InferenceSession } from 'onnxruntime-common'
import { buildStageGraph, type StageGraph, type StageGraphInit } from '../onnx/stage-graph.js'
import type { WeightProvider } from '../weights/weight-provider.js'

/**
 * Stages built before, kept by the environment (a directory on a Node worker), so that a
 * restarted worker, or one given back a layer range it held, opens its session without
 * fetching a tensor or building a graph: model load as a mmap'd, pre-converted file is for
 * llama.cpp. Entries are named by `description`, which holds everything the graph depends on
 * in core (the graph options and the weights' fingerprint); the cache adds what it depends on
 * outside (the builder's code, the runtime, the machine, the session options).
 */
export interface StageCache {
  /** A session on the stage stored under `key`, or undefined when there is none. */
  open(key: StageCacheKey, options: InferenceSession.SessionOptions): Promise<InferenceSession | undefined>
  /** Keeps `graph` under `key` (where it fits) and returns a session on it. */
  store(
    key: StageCacheKey,
    graph: StageGraph,
    options: InferenceSession.SessionOptions,
  ): Promise<InferenceSession>
}

export interface StageCacheKey {
  /** stageDescription: equal descriptions, equal graphs. */
  readonly description: string
  /** What the graph was built with, for a cache that stores some graphs differently. */
  readonly init: StageGraphInit
}

/**
 * What a stage graph is built from, as one string; undefined when the weights carry no
 * fingerprint (nothing then says two builds would be the same).
 */
export function stageDescription(init: StageGraphInit, weights: WeightProvider): string | undefined {
  if (weights.fingerprint === undefined) return undefined
  return JSON.stringify({
    config: init.config,
    layers: [init.layerStart, init.layerEnd],
    topK: init.topK ?? null,
    emitLogits: init.emitLogits === true,
    externalData: init.externalData === true,
    int4Compute: init.int4Compute ?? 'fp32',
    weights: weights.fingerprint,
  })
}

/** The stage's session: from the cache when it holds the stage, else built (and then stored). */
export async function openOrBuildStage(
  init: StageGraphInit,
  weights: WeightProvider,
  options: InferenceSession.SessionOptions,
  load: (graph: StageGraph, options: InferenceSession.SessionOptions) => Promise<InferenceSession>,
  cache: StageCache | undefined,
): Promise<InferenceSession> {
  const description = cache === undefined ? undefined : stageDescription(init, weights)
  if (cache === undefined || description === undefined)
    return load(await buildStageGraph(init, weights), options)
  const key = { description, init }
  const cached = await cache.open(key, options)
  if (cached !== undefined) return cached
  return cache.store(key, await buildStageGraph(init, weights), options)
}
