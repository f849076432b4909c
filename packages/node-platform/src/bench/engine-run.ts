import { readFileSync } from 'node:fs'
import { generate, type Pipeline } from '@butterfly/core'
import { createLocalPipeline } from '../backend/local-pipeline.js'
import { createNodeBackend } from '../backend/node-backend.js'
import { type LoadedModel, loadModel } from '../models/model-store.js'
import { median } from './stats.js'

export interface EngineRunSpec {
  readonly model: string
  /** Stage counts measured side by side; the first is the baseline of the ratios. */
  readonly stages: readonly number[]
  readonly promptTokens: number
  readonly decodeTokens: number
  readonly rounds: number
}

export interface StageCountResult {
  readonly stages: number
  readonly prefillTokensPerSec: number
  readonly decodeTokensPerSec: number
  /** Median over rounds of (this / baseline), each round timed back to back. */
  readonly prefillRatio: number
  readonly decodeRatio: number
}

/**
 * Times every stage count in one process, round-robin, so drift on a shared machine hits
 * all of them alike: each round runs one generation per pipeline. One warm-up round first.
 */
export async function runSideBySide(spec: EngineRunSpec): Promise<StageCountResult[]> {
  const model = await loadModel(spec.model)
  const backend = createNodeBackend()
  const pipelines: Array<Pipeline & { dispose(): Promise<void> }> = []
  for (const k of spec.stages) pipelines.push(await createLocalPipeline(model, backend, { stages: k }))
  const prompt = benchPrompt(spec.promptTokens)
  const prefill = spec.stages.map(() => [] as number[])
  const decode = spec.stages.map(() => [] as number[])
  for (let round = 0; round <= spec.rounds; round++) {
    for (const [i, p] of pipelines.entries()) {
      const [pre, dec] = await timeGeneration(p, prompt, spec.decodeTokens)
      if (round === 0) continue
      prefill[i]?.push(spec.promptTokens / pre)
      decode[i]?.push((spec.decodeTokens - 1) / dec)
    }
  }
  await Promise.all(pipelines.map((p) => p.dispose()))
  await model.close()
  const ratio = (series: number[][], i: number) =>
    median((series[i] ?? []).map((v, r) => v / (series[0]?.[r] ?? Number.NaN)))
  return spec.stages.map((stages, i) => ({
    stages,
    prefillTokensPerSec: median(prefill[i] ?? []),
    decodeTokensPerSec: median(decode[i] ?? []),
    prefillRatio: ratio(prefill, i),
    decodeRatio: ratio(decode, i),
  }))
}

export interface FootprintResult {
  readonly loadSeconds: number
  readonly peakRssMiB: number
}

/** Load time and peak RSS of one configuration; run it alone in a fresh process. */
export async function measureFootprint(
  modelSpec: string,
  stages: number,
  tokens: number,
): Promise<FootprintResult> {
  const t0 = performance.now()
  const model: LoadedModel = await loadModel(modelSpec)
  const pipeline = await createLocalPipeline(model, createNodeBackend(), { stages })
  const loadSeconds = (performance.now() - t0) / 1000
  await timeGeneration(pipeline, benchPrompt(tokens), tokens)
  await pipeline.dispose()
  await model.close()
  return { loadSeconds, peakRssMiB: peakRssMiB() }
}

/**
 * Peak RSS of this process, MiB. On Linux this is VmHWM, which belongs to the address space and
 * starts afresh at exec. getrusage's maxRSS does not: a child keeps the peak of the process it
 * was forked from, so a bench child spawned by a parent holding models reported the parent's size.
 */
function peakRssMiB(): number {
  try {
    const hwm = readFileSync('/proc/self/status', 'utf8').match(/^VmHWM:\s+(\d+) kB$/m)
    if (hwm) return Number(hwm[1]) / 1024
  } catch {
    // not Linux: fall back below
  }
  return process.resourceUsage().maxRSS / 1024
}

export function benchPrompt(n: number): number[] {
  return Array.from({ length: n }, (_, i) => 3 + ((i * 31) % 250))
}

/** Seconds to the first token (prefill) and for the rest (decode). */
export async function timeGeneration(
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
