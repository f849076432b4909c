import { generate, type Pipeline } from '@butterfly/core'
import { createLocalPipeline } from '../local-pipeline.js'
import { loadModel } from '../model-store.js'
import { createNodeBackend } from '../node-backend.js'
import { median } from './stats.js'

export interface EngineRunSpec {
  readonly model: string
  readonly stages: number
  readonly promptTokens: number
  readonly decodeTokens: number
  readonly repeats: number
}

export interface EngineRunResult extends EngineRunSpec {
  readonly prefillTokensPerSec: number
  readonly decodeTokensPerSec: number
  readonly loadSeconds: number
  readonly peakRssMiB: number
}

/**
 * One configuration, run in its own process so its peak RSS is its own. Prefill and decode
 * are timed separately: prefill is the first step (prompt in, first token out), decode the
 * remaining tokens. One warm-up generation, then `repeats` timed ones; medians reported.
 */
export async function runEngineConfig(spec: EngineRunSpec): Promise<EngineRunResult> {
  const t0 = performance.now()
  const model = await loadModel(spec.model)
  const pipeline = await createLocalPipeline(model, createNodeBackend(), { stages: spec.stages })
  const loadSeconds = (performance.now() - t0) / 1000
  const prompt = Array.from({ length: spec.promptTokens }, (_, i) => 3 + ((i * 31) % 250))
  const prefill: number[] = []
  const decode: number[] = []
  for (let r = 0; r <= spec.repeats; r++) {
    const [p, d] = await timeGeneration(pipeline, prompt, spec.decodeTokens)
    if (r > 0) {
      prefill.push(spec.promptTokens / p)
      decode.push((spec.decodeTokens - 1) / d)
    }
  }
  await pipeline.dispose()
  await model.close()
  return {
    ...spec,
    prefillTokensPerSec: median(prefill),
    decodeTokensPerSec: median(decode),
    loadSeconds,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  }
}

async function timeGeneration(
  pipeline: Pipeline,
  prompt: number[],
  tokens: number,
): Promise<[number, number]> {
  const start = performance.now()
  let firstAt = 0
  let count = 0
  for await (const _ of generate(pipeline, {
    promptIds: prompt,
    maxTokens: tokens,
    sampling: { temperature: 0 },
  })) {
    if (count++ === 0) firstAt = performance.now()
  }
  const end = performance.now()
  return [(firstAt - start) / 1000, (end - firstAt) / 1000]
}
