import {
  dequantizeInt4,
  expectedWeightShapes,
  fromFloat32,
  generate,
  type Int4Compute,
  isInt4Weight,
  type ModelConfig,
  type Pipeline,
  quantizeInt4,
  ReferenceModel,
  type StageSession,
  syntheticConfig,
  syntheticStoredWeights,
  syntheticTensor,
  toFloat32,
  uniformPartition,
  type WeightProvider,
} from '@butterfly/core'
import { createNodeBackend } from '@butterfly/node-platform'
import { argmax, relativeError } from './numerics.js'

/** Synthetic weights served from memory, optionally stored as fp16 (int4 where the config says). */
export function syntheticWeights(config: ModelConfig, dtype: 'F32' | 'F16' = 'F32'): WeightProvider {
  if (config.quantization !== undefined) return syntheticStoredWeights(config, dtype)
  return async (name, shape) => ({ dtype, shape, data: fromFloat32(syntheticTensor(config, name), dtype) })
}

/**
 * The reference model over the same weights (rounded through fp16 when the graph stores fp16,
 * dequantised from int4 where an int4 config says so).
 */
export function referenceFor(config: ModelConfig, dtype: 'F32' | 'F16' = 'F32'): ReferenceModel {
  const weights = new Map<string, Float32Array>()
  for (const [name, shape] of expectedWeightShapes(config)) {
    const data = syntheticTensor(config, name)
    const [n = 1, k = 1] = shape
    const blockSize = config.quantization?.blockSize
    if (isInt4Weight(config, name)) weights.set(name, dequantizeInt4(quantizeInt4(data, n, k, blockSize)))
    else
      weights.set(name, dtype === 'F32' ? data : toFloat32({ dtype, shape, data: fromFloat32(data, dtype) }))
  }
  return new ReferenceModel(config, weights)
}

export async function buildPipeline(
  config: ModelConfig,
  stages: number,
  opts: { dtype?: 'F32' | 'F16'; emitLogits?: boolean; topK?: number; int4Compute?: Int4Compute } = {},
): Promise<Pipeline & { stages: StageSession[]; dispose(): Promise<void> }> {
  const backend = createNodeBackend({
    threads: 1,
    ...(opts.int4Compute ? { int4Compute: opts.int4Compute } : {}),
  })
  const weights = syntheticWeights(config, opts.dtype)
  const sessions: StageSession[] = []
  for (const r of uniformPartition(config.numLayers, stages)) {
    sessions.push(
      await backend.createStage(
        {
          config,
          layerStart: r.start,
          layerEnd: r.end,
          ...(opts.emitLogits ? { emitLogits: true } : {}),
          ...(opts.topK ? { topK: opts.topK } : {}),
        },
        weights,
      ),
    )
  }
  return {
    stages: sessions,
    maxContext: config.maxContext,
    dispose: async () => {
      await Promise.all(sessions.map((s) => s.dispose()))
    },
  }
}

/** Runs `tokens` through every stage as one step and returns the last position's full logits. */
export async function stepLogits(
  pipeline: Pipeline,
  id: string,
  tokens: readonly number[],
  startPos: number,
): Promise<Float32Array> {
  let hidden: Float32Array | undefined
  for (const stage of pipeline.stages) {
    const out = await stage.step(id, {
      ...(stage.isFirst ? { tokens } : hidden === undefined ? {} : { hidden }),
      seqLen: tokens.length,
      startPos,
    })
    if (stage.isLast) {
      if (out.logits === undefined) throw new Error('stage built without emitLogits')
      return out.logits
    }
    hidden = out.hidden
  }
  throw new Error('pipeline has no last stage')
}

/** What `trackReference` saw at each step, for the caller to assert on. */
export interface ReferenceTrack {
  /** relativeError(pipeline logits, reference logits) per step. */
  readonly errors: number[]
  /** The pipeline's and the reference's greedy token per step. */
  readonly actual: number[]
  readonly expected: number[]
}

/**
 * Decodes greedily through `pipeline` and the float64 `reference` in lockstep for `steps` steps
 * after `prompt` (both fed the reference's token, so one mismatch does not cascade), recording
 * each step's logit error and both argmaxes.
 */
export async function trackReference(
  pipeline: Pipeline,
  reference: ReferenceModel,
  prompt: readonly number[],
  steps: number,
): Promise<ReferenceTrack> {
  const track: ReferenceTrack = { errors: [], actual: [], expected: [] }
  const cache = reference.createCache()
  let expected = reference.forward(prompt, cache)
  let actual = await stepLogits(pipeline, 'g', prompt, 0)
  for (let step = 0; step < steps; step++) {
    const token = argmax(expected)
    track.errors.push(relativeError(actual, expected))
    track.actual.push(argmax(actual))
    track.expected.push(token)
    expected = reference.forward([token], cache)
    actual = await stepLogits(pipeline, 'g', [token], prompt.length + step)
  }
  return track
}

export { argmax, relativeError } from './numerics.js'
export { syntheticConfig }

/** Greedy tokens through `generate` on a buildPipeline of `config` (synthetic weights), disposed after. */
export async function pipelineGreedy(
  config: ModelConfig,
  stages: number,
  prompt: readonly number[],
  maxTokens: number,
  opts: Parameters<typeof buildPipeline>[2] = {},
): Promise<number[]> {
  const pipeline = await buildPipeline(config, stages, opts)
  try {
    const out: number[] = []
    for await (const t of generate(pipeline, { promptIds: prompt, maxTokens, sampling: { temperature: 0 } }))
      out.push(t.id)
    return out
  } finally {
    await pipeline.dispose()
  }
}

/** Greedy tokens of `weights` under `config` on onnxruntime-node, the layers cut into `stages`. */
export async function ortGreedy(
  config: ModelConfig,
  weights: WeightProvider,
  stages: number,
  prompt: readonly number[],
  steps: number,
): Promise<number[]> {
  const backend = createNodeBackend({ threads: 1 })
  const sessions: StageSession[] = []
  try {
    for (const r of uniformPartition(config.numLayers, stages)) {
      sessions.push(
        await backend.createStage(
          { config, layerStart: r.start, layerEnd: r.end, emitLogits: true },
          weights,
        ),
      )
    }
    const pipeline = { stages: sessions, maxContext: config.maxContext }
    const tokens: number[] = []
    let input = [...prompt]
    let pos = 0
    for (let s = 0; s < steps; s++) {
      const logits = await stepLogits(pipeline, 'greedy', input, pos)
      pos += input.length
      const next = argmaxOf(logits)
      tokens.push(next)
      input = [next]
    }
    return tokens
  } finally {
    await Promise.all(sessions.map((s) => s.dispose()))
  }
}

function argmaxOf(x: Float32Array): number {
  let best = 0
  for (let i = 1; i < x.length; i++) if ((x[i] as number) > (x[best] as number)) best = i
  return best
}
