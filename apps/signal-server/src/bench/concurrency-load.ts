import { percentile } from '@butterfly/node-platform/bench'
import OpenAI from 'openai'

// Completions through the OpenAI API with the official client, alone or many at once, timed as
// the caller sees them; a failed request is kept (as lost), never thrown.

export interface Completion {
  readonly prompt: string
  readonly text: string
  /** Completion tokens, from the usage the server reports. */
  readonly tokens: number
  readonly startMs: number
  readonly endMs: number
  /** Why it failed; such a completion is lost. */
  readonly error?: string
}

export interface LoadTarget {
  readonly client: OpenAI
  readonly model: string
  readonly maxTokens: number
}

export function openAiTarget(baseUrl: string, model: string, maxTokens: number): LoadTarget {
  // No retries: a refused or failed request must show as lost, not be quietly run again; one
  // that hangs (a mesh that lost its plan can hold it until the server's request timeout) is
  // lost after two minutes.
  return {
    client: new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 }),
    model,
    maxTokens,
  }
}

/** One greedy completion, streamed (`stream: true`, usage in the last chunk) or not. */
export async function complete(target: LoadTarget, prompt: string, stream: boolean): Promise<Completion> {
  const startMs = performance.now()
  const body = { model: target.model, prompt, max_tokens: target.maxTokens, temperature: 0 }
  let text = ''
  let tokens = -1
  try {
    if (stream) {
      const chunks = await target.client.completions.create({
        ...body,
        stream: true,
        stream_options: { include_usage: true },
      })
      for await (const chunk of chunks) {
        text += chunk.choices[0]?.text ?? ''
        if (chunk.usage) tokens = chunk.usage.completion_tokens
      }
    } else {
      const res = await target.client.completions.create(body)
      text = res.choices[0]?.text ?? ''
      tokens = res.usage?.completion_tokens ?? -1
    }
    const endMs = performance.now()
    if (tokens < 0) return { prompt, text, tokens: 0, startMs, endMs, error: 'no usage reported' }
    return { prompt, text, tokens, startMs, endMs }
  } catch (err) {
    return { prompt, text, tokens: 0, startMs, endMs: performance.now(), error: String(err) }
  }
}

export interface LoadFigures {
  readonly completions: number
  /** Completion tokens of the completions that finished, per second of the run's wall time. */
  readonly tokensPerSec: number
  readonly completionsPerSec: number
  readonly p50Ms: number
  readonly p95Ms: number
  readonly lost: number
  /** Finished completions whose text differs from the prompt's text run alone. */
  readonly mismatches: number
  readonly wallMs: number
}

/**
 * Figures of a run of completions against the texts of the same prompts run alone; the wall time
 * runs from the first request to the last answer.
 */
export function loadFigures(
  runs: readonly Completion[],
  reference: ReadonlyMap<string, string>,
): LoadFigures {
  const done = runs.filter((r) => r.error === undefined)
  const wallMs = Math.max(...runs.map((r) => r.endMs)) - Math.min(...runs.map((r) => r.startMs))
  const latencies = done.map((r) => r.endMs - r.startMs)
  return {
    completions: runs.length,
    tokensPerSec: done.reduce((n, r) => n + r.tokens, 0) / (wallMs / 1000),
    completionsPerSec: done.length / (wallMs / 1000),
    p50Ms: latencies.length ? percentile(latencies, 50) : Number.NaN,
    p95Ms: latencies.length ? percentile(latencies, 95) : Number.NaN,
    lost: runs.length - done.length,
    mismatches: done.filter((r) => r.text !== reference.get(r.prompt)).length,
    wallMs,
  }
}

/** The prompts all at once, one request each. */
export function burst(
  target: LoadTarget,
  prompts: readonly string[],
  stream: boolean,
): Promise<Completion[]> {
  return Promise.all(prompts.map((p) => complete(target, p, stream)))
}

/**
 * `concurrency` callers, each sending its next prompt (round the list) as soon as its last one
 * is answered, until `durationMs` have passed; what has started is waited for.
 */
export async function sustain(
  target: LoadTarget,
  prompts: readonly string[],
  opts: { readonly concurrency: number; readonly durationMs: number; readonly stream: boolean },
): Promise<Completion[]> {
  const runs: Completion[] = []
  const until = performance.now() + opts.durationMs
  let next = 0
  const caller = async () => {
    while (performance.now() < until) {
      const run = await complete(target, prompts[next++ % prompts.length] as string, opts.stream)
      runs.push(run)
      // A caller whose requests fail at once would spin; one loss is enough to report.
      if (run.error !== undefined) return
    }
  }
  await Promise.all(Array.from({ length: opts.concurrency }, caller))
  return runs
}

/** First few lost or mismatched completions, for the error a bench fails with. */
export function describeFailures(
  runs: readonly Completion[],
  reference: ReadonlyMap<string, string>,
): string {
  return runs
    .filter((r) => r.error !== undefined || r.text !== reference.get(r.prompt))
    .slice(0, 3)
    .map((r) =>
      r.error !== undefined
        ? `lost ${JSON.stringify(r.prompt)}: ${r.error}`
        : `${JSON.stringify(r.prompt)}: ${JSON.stringify(r.text)} != alone ${JSON.stringify(reference.get(r.prompt))}`,
    )
    .join('\n')
}
