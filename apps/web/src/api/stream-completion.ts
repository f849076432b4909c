import type { StepProvenance } from '@butterfly/core'

/**
 * Streams a completion from the server's OpenAI-compatible API: POST /v1/completions with
 * `stream: true`, read as server-sent events. Each text delta goes to `onText`; the promise
 * settles when the server sends [DONE] (with the token count from the usage chunk), or rejects with an ApiFailure carrying the server's
 * error in words a person can read.
 */
export interface CompletionParams {
  readonly prompt: string
  readonly maxTokens: number
  readonly temperature: number
  readonly topP: number
  readonly seed: number
}

/** Who computed and who confirmed each stage's step for one token (the server's `butterfly` extension). */
export interface TokenProvenance {
  readonly stages: ReadonlyArray<StepProvenance | null>
  /** Positions the generation rolled back (failed window checks) before this token was sent. */
  readonly rolledBack?: number
}

export class ApiFailure extends Error {
  override readonly name = 'ApiFailure'
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
  ) {
    super(message)
  }
}

interface ErrorBody {
  error?: { message?: unknown; code?: unknown }
}

function failure(status: number, body: ErrorBody | undefined): ApiFailure {
  const message =
    typeof body?.error?.message === 'string' ? body.error.message : `the server answered ${status}`
  const code = typeof body?.error?.code === 'string' ? body.error.code : 'http_error'
  return new ApiFailure(message, code, status)
}

/** Resolves with the number of tokens generated, as the server counted them. */
export async function streamCompletion(
  params: CompletionParams,
  onText: (text: string, tokens: readonly TokenProvenance[]) => void,
  signal: AbortSignal,
): Promise<number | undefined> {
  const res = await fetch('/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: await firstModel(signal),
      prompt: params.prompt,
      max_tokens: params.maxTokens,
      temperature: params.temperature,
      top_p: params.topP,
      seed: params.seed,
      stream: true,
      stream_options: { include_usage: true },
    }),
    signal,
  })
  if (!res.ok || res.body === null)
    throw failure(res.status, (await res.json().catch(() => undefined)) as ErrorBody)
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  let generated: number | undefined
  for (;;) {
    const { value, done } = await reader.read()
    if (done) throw new ApiFailure('the server closed the stream before it finished', 'stream_cut', 502)
    buffer += value
    let end = buffer.indexOf('\n\n')
    while (end !== -1) {
      const event = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      end = buffer.indexOf('\n\n')
      const data = event
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n')
      if (data === '') continue
      if (data === '[DONE]') return generated
      const chunk = JSON.parse(data) as {
        choices?: Array<{ text?: string }>
        usage?: { completion_tokens?: number }
        butterfly?: { tokens?: TokenProvenance[] }
      } & ErrorBody
      if (chunk.error !== undefined) throw failure(500, chunk)
      // A token that ends inside a multi-byte character brings no text; the usage chunk counts it.
      if (typeof chunk.usage?.completion_tokens === 'number') generated = chunk.usage.completion_tokens
      const text = chunk.choices?.[0]?.text
      const tokens = Array.isArray(chunk.butterfly?.tokens) ? chunk.butterfly.tokens : []
      if (typeof text === 'string' && (text.length > 0 || tokens.length > 0)) onText(text, tokens)
    }
  }
}

async function firstModel(signal: AbortSignal): Promise<string> {
  const res = await fetch('/v1/models', { signal })
  if (!res.ok) throw failure(res.status, (await res.json().catch(() => undefined)) as ErrorBody)
  const body = (await res.json()) as { data?: Array<{ id?: string }> }
  const id = body.data?.[0]?.id
  if (typeof id !== 'string') throw new ApiFailure('the mesh serves no model yet', 'no_model', 503)
  return id
}
