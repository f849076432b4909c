import type { TopKLogits } from '../base/top-k-logits.js'
import { ButterflyError, GenerationError } from '../errors.js'
import type { StageSession, StepProvenance } from './inference-backend.js'
import { Sampler, type SamplingParams, validateSamplingParams } from './sampler.js'

export interface GenerateRequest {
  readonly promptIds: readonly number[]
  readonly maxTokens: number
  readonly sampling: SamplingParams
  /** Generation ends (without emitting it) when one of these is sampled. */
  readonly stopTokenIds?: readonly number[]
  /** Prefill in chunks of at most this many tokens (default: the whole prompt at once). */
  readonly prefillChunk?: number
  /** Caller-chosen id; unique among generations running on the same stages. */
  readonly generationId?: string
  /**
   * The last stage takes its logSumExp at temperature 1 whatever the sampling temperature, so
   * each GeneratedToken's `topk` gives the model's own log-probabilities (value − logSumExp, what
   * OpenAI reports). Greedy tokens are unchanged; a sampled draw is then over the candidates
   * renormalised at the sampling temperature (see Sampler.sample).
   */
  readonly logprobs?: boolean
}

export type FinishReason = 'length' | 'stop' | 'context'

export interface GenerationResult {
  readonly finishReason: FinishReason
  readonly promptTokens: number
  readonly completionTokens: number
}

export interface GeneratedToken {
  readonly id: number
  /**
   * The candidates the token was sampled from, as the last stage returned them (before
   * penalties); logSumExp is at temperature 1 when the request asked for `logprobs`.
   */
  readonly topk: TopKLogits
  /** Per stage, who computed the step the token was sampled from (stages that know). */
  readonly provenance?: ReadonlyArray<StepProvenance | undefined>
}

/**
 * Called when a stage fails for good (its peer went away or stopped answering). Returns a new
 * pipeline to continue on, or undefined to give up. The generation replays every token so far
 * through the new pipeline as one prefill, so the new peers rebuild their KV caches.
 */
export type PipelineRecovery = (error: unknown) => Promise<Pipeline | undefined>

export interface GenerateOptions {
  readonly recover?: PipelineRecovery
  /** Recoveries allowed in one generation; default 3. */
  readonly maxRecoveries?: number
}

/** Stage errors a new pipeline can cure. */
const RECOVERABLE = new Set(['ERR_STAGE_GONE', 'ERR_STEP_TIMEOUT', 'ERR_CHANNEL_CLOSED'])

/** The coordinator's view of the pipeline: the stages in layer order. */
export interface Pipeline {
  readonly stages: readonly StageSession[]
  readonly maxContext: number
}

let nextId = 0

/**
 * Drives one generation through the stages: prefill the prompt, then decode one token per
 * step, sampling on the coordinator from the last stage's top-k. Yields tokens as they
 * come and returns why it stopped. KV caches are freed on every exit path.
 */
export async function* generate(
  pipeline: Pipeline,
  request: GenerateRequest,
  signal?: AbortSignal,
  options: GenerateOptions = {},
): AsyncGenerator<GeneratedToken, GenerationResult> {
  let { stages } = pipeline
  const { maxContext } = pipeline
  const used = new Set(stages)
  const sampling = validateSamplingParams(request.sampling)
  const prompt = request.promptIds
  if (stages.length === 0) throw new ButterflyError('ERR_PIPELINE', 'pipeline has no stages')
  if (prompt.length === 0) throw new ButterflyError('ERR_EMPTY_PROMPT', 'prompt has no tokens')
  if (!Number.isInteger(request.maxTokens) || request.maxTokens < 0) {
    throw new ButterflyError('ERR_MAX_TOKENS', `maxTokens must be a non-negative integer`)
  }
  if (prompt.length > maxContext) {
    throw new GenerationError(
      'ERR_CONTEXT_OVERFLOW',
      `prompt of ${prompt.length} tokens exceeds the context of ${maxContext}`,
    )
  }
  const chunk = request.prefillChunk ?? prompt.length
  if (!Number.isInteger(chunk) || chunk < 1)
    throw new ButterflyError('ERR_PREFILL_CHUNK', 'bad prefill chunk')

  const id = request.generationId ?? `g${nextId++}`
  const sampler = new Sampler(sampling)
  const stop = new Set(request.stopTokenIds ?? [])
  // 0 (greedy) makes the stage use 1, as does a request for log-probabilities.
  const temperature = request.logprobs === true ? 1 : sampling.temperature
  const lseTemperature = temperature === 0 ? 1 : temperature
  let position = 0
  let completion = 0
  /** Every token fed so far, for replay onto a recovered pipeline. */
  const fed: number[] = []
  let recoveries = 0

  const step = async (tokens: readonly number[]): Promise<TopKLogits | undefined> => {
    for (;;) {
      try {
        const topk = await runStages(tokens)
        fed.push(...tokens)
        return topk
      } catch (err) {
        const code = (err as { code?: unknown })?.code
        if (options.recover === undefined || typeof code !== 'string' || !RECOVERABLE.has(code)) throw err
        if (recoveries++ >= (options.maxRecoveries ?? 3)) throw err
        signal?.throwIfAborted()
        const next = await options.recover(err)
        if (next === undefined) throw err
        for (const stage of stages) stage.endGeneration(id)
        stages = next.stages
        for (const stage of stages) used.add(stage)
        // Rebuild the new peers' caches: everything fed so far, then this step's tokens.
        position = 0
        tokens = [...fed.splice(0), ...tokens]
      }
    }
  }

  const runStages = async (tokens: readonly number[]): Promise<TopKLogits | undefined> => {
    let hidden: Float32Array | undefined
    let topk: TopKLogits | undefined
    for (const stage of stages) {
      const data = stage.isFirst ? { tokens } : hidden === undefined ? {} : { hidden }
      const out = await stage.step(
        id,
        { ...data, seqLen: tokens.length, startPos: position, temperature },
        signal,
      )
      hidden = out.hidden
      topk = out.topk
    }
    position += tokens.length
    return topk
  }

  try {
    let topk: TopKLogits | undefined
    for (let i = 0; i < prompt.length; i += chunk) topk = await step(prompt.slice(i, i + chunk))
    while (completion < request.maxTokens) {
      if (topk === undefined) throw new ButterflyError('ERR_PIPELINE', 'last stage returned no logits')
      const token = sampler.sample(topk, lseTemperature)
      if (stop.has(token)) return result('stop')
      completion++
      const provenance = stages.map((s) => s.provenance?.(id))
      yield provenance.some((p) => p !== undefined) ? { id: token, topk, provenance } : { id: token, topk }
      if (completion === request.maxTokens) break
      if (position >= maxContext) return result('context')
      topk = await step([token])
    }
    return result('length')
  } finally {
    for (const stage of used) stage.endGeneration(id)
  }

  function result(finishReason: FinishReason): GenerationResult {
    return { finishReason, promptTokens: prompt.length, completionTokens: completion }
  }
}
