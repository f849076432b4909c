import type { TopKLogits } from '../base/top-k-logits.js'
import { ButterflyError, GenerationError, VerifyError } from '../errors.js'
import type { StageSession, StepProvenance } from './inference-backend.js'
import { Sampler, type SamplingParams, validateSamplingParams } from './sampler.js'
import { TokenLedger } from './token-ledger.js'

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
  /** Per stage, who computed and who confirmed the step the token was sampled from (stages that know). */
  readonly provenance?: ReadonlyArray<StepProvenance | undefined>
  /** Positions rolled back in this generation before the token was shown (window checks that failed). */
  readonly rolledBack?: number
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
  /** Rollbacks after failed window checks allowed in one generation; default 64. */
  readonly maxRollbacks?: number
}

/** Stage errors a new pipeline can cure. */
const RECOVERABLE = new Set(['ERR_STAGE_GONE', 'ERR_STEP_TIMEOUT', 'ERR_CHANNEL_CLOSED', 'ERR_CHAIN_LINK'])

/** The coordinator's view of the pipeline: the stages in layer order. */
export interface Pipeline {
  readonly stages: readonly StageSession[]
  readonly maxContext: number
}

let nextId = 0

/**
 * Drives one generation through the stages: prefill the prompt, then decode one token per
 * step, sampling on the coordinator from the last stage's top-k. Yields tokens as they are
 * confirmed and returns why it stopped. KV caches are freed on every exit path.
 *
 * Stages that verify in windows (replicated stages) let a trusted leader run ahead; a token is
 * held back (TokenLedger) until every stage has confirmed every position it depends on, and a
 * failed check rolls every stage back (StageSession.truncate) to the first unconfirmed
 * position, forgets the tokens drawn from there on and draws them again. So no token a rollback
 * takes back is ever yielded, and a seeded sample is the same as without the rollback.
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
  const ledger = new TokenLedger(id, sampler, signal)
  const stop = new Set(request.stopTokenIds ?? [])
  // 0 (greedy) makes the stage use 1, as does a request for log-probabilities.
  const temperature = request.logprobs === true ? 1 : sampling.temperature
  const lseTemperature = temperature === 0 ? 1 : temperature
  const candidates = candidatesNeeded(sampling, request.logprobs === true)
  const L = prompt.length
  let position = 0
  /** Every token fed so far, for replay onto a recovered pipeline. */
  const fed: number[] = []
  let recoveries = 0
  let topk: TopKLogits | undefined

  /** The tokens to feed after a rollback to q: the rest of the prompt, or the token drawn at q. */
  const resumeAt = (q: number): number[] =>
    q < L ? prompt.slice(q) : [(ledger.tokens[q - L] as { id: number }).id]

  const runStages = async (tokens: readonly number[]): Promise<TopKLogits | undefined> => {
    let hidden: Float32Array | undefined
    let out: TopKLogits | undefined
    for (const stage of stages) {
      const data = stage.isFirst ? { tokens } : hidden === undefined ? {} : { hidden }
      const input = { ...data, seqLen: tokens.length, startPos: position, temperature }
      const res = await stage.step(id, candidates === undefined ? input : { ...input, candidates }, signal)
      hidden = res.hidden
      out = res.topk
    }
    position += tokens.length
    return out
  }

  const feed = async (tokens: readonly number[]): Promise<void> => {
    for (let i = 0; i < tokens.length; i += chunk) {
      const part = tokens.slice(i, i + chunk)
      for (;;) {
        try {
          topk = await runStages(part)
          fed.push(...part)
          break
        } catch (err) {
          const code = (err as { code?: unknown })?.code
          if (options.recover === undefined || typeof code !== 'string' || !RECOVERABLE.has(code)) throw err
          if (recoveries++ >= (options.maxRecoveries ?? 3)) throw err
          signal?.throwIfAborted()
          const next = await options.recover(err)
          if (next === undefined) throw err
          // Only confirmed positions carry over to the new peers; the rest is drawn again there.
          const q = ledger.confirmed(stages, position)
          const rest = q < position ? resumeAt(q) : [...part, ...tokens.slice(i + chunk)]
          ledger.cut(q)
          ledger.abandon()
          for (const stage of stages) stage.endGeneration(id)
          stages = next.stages
          for (const stage of stages) used.add(stage)
          // Rebuild the new peers' caches: everything confirmed so far, then what comes next.
          position = 0
          const replay = [...fed.splice(0).slice(0, q), ...rest]
          return feed(replay)
        }
      }
    }
  }

  /** Rolls every stage back to q and says what to feed next. */
  const rollback = async (q: number): Promise<number[]> => {
    if (ledger.rollbacks++ >= (options.maxRollbacks ?? 64)) {
      throw new VerifyError(
        'ERR_TOO_MANY_ROLLBACKS',
        `generation ${id}: ${ledger.rollbacks - 1} window checks failed, giving up`,
      )
    }
    for (const stage of stages) {
      if (typeof stage.truncate !== 'function' && (stage.confirmedLength?.(id) ?? position) < position) {
        throw new GenerationError('ERR_TRUNCATE', 'a stage of this pipeline cannot roll back')
      }
    }
    await Promise.all(stages.map((s) => s.truncate?.(id, q, signal)))
    ledger.rolledBackPositions += position - q
    ledger.cut(q)
    position = q
    fed.length = q
    return resumeAt(q)
  }

  const show = (t: { id: number; topk: TopKLogits; needs: number }): GeneratedToken => {
    const provenance = stages.map((s) => s.provenance?.(id, t.needs - 1))
    const rolled = ledger.rolledBackPositions > 0 ? { rolledBack: ledger.rolledBackPositions } : {}
    return provenance.some((p) => p !== undefined)
      ? { id: t.id, topk: t.topk, provenance, ...rolled }
      : { id: t.id, topk: t.topk, ...rolled }
  }

  try {
    let next: number[] = [...prompt]
    for (;;) {
      await feed(next)
      const completion = ledger.tokens.filter((t) => !t.stop).length
      let finish: FinishReason | undefined
      if (completion >= request.maxTokens) finish = 'length'
      else {
        if (topk === undefined) throw new ButterflyError('ERR_PIPELINE', 'last stage returned no logits')
        const before = sampler.checkpoint()
        const token = sampler.sample(topk, lseTemperature)
        const isStop = stop.has(token)
        ledger.tokens.push({ id: token, topk, needs: position, before, stop: isStop })
        if (isStop) finish = 'stop'
        else if (completion + 1 >= request.maxTokens) finish = 'length'
        else if (position >= maxContext) finish = 'context'
      }
      ledger.maybeCheck(stages)
      const q = await ledger.settle(stages, position, finish !== undefined)
      if (q !== undefined) {
        next = await rollback(q)
        continue
      }
      for (const t of ledger.releasable(stages, position)) yield show(t)
      if (finish !== undefined) return result(finish, ledger.tokens.filter((t) => !t.stop).length)
      next = [(ledger.tokens[ledger.tokens.length - 1] as { id: number }).id]
    }
  } finally {
    for (const stage of used) stage.endGeneration(id)
  }

  function result(finishReason: FinishReason, completionTokens: number): GenerationResult {
    return { finishReason, promptTokens: prompt.length, completionTokens }
  }
}

/**
 * How many of the last stage's candidates the draw can use (StageStepInput.candidates), so that
 * fewer bytes come back: one for a greedy token, top_k for a sampled one; all of them for
 * log-probabilities, penalties and logit biases, which look past the first.
 */
export function candidatesNeeded(sampling: SamplingParams, logprobs: boolean): number | undefined {
  const bias = sampling.logitBias !== undefined && Object.keys(sampling.logitBias).length > 0
  if (logprobs || bias || (sampling.frequencyPenalty ?? 0) !== 0 || (sampling.presencePenalty ?? 0) !== 0) {
    return undefined
  }
  return sampling.temperature === 0 ? 1 : sampling.topK
}
