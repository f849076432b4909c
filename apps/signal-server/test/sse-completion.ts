import type { StepProvenance } from '@butterfly/core'

// The client's side of POST /v1/completions with `stream: true`: what reached the client, read off
// the SSE `data:` lines exactly as they came, with the `butterfly` extension's per-token provenance.

/** One streamed token's provenance (the `butterfly.tokens` entries, in order). */
export interface StreamedToken {
  readonly stages: ReadonlyArray<StepProvenance | null>
  readonly rolledBack?: number
}

export interface StreamedCompletion {
  readonly text: string
  readonly tokens: readonly StreamedToken[]
  readonly finishReason: string | null
  /** Whether the stream ended with `data: [DONE]`. */
  readonly done: boolean
}

interface Chunk {
  choices?: Array<{ text?: string; finish_reason?: string | null }>
  butterfly?: { tokens?: StreamedToken[] }
  error?: unknown
}

/** Streams a greedy completion of `prompt` and collects every chunk until [DONE]. */
export async function streamCompletion(
  serverUrl: string,
  prompt: string,
  maxTokens: number,
): Promise<StreamedCompletion> {
  const res = await fetch(`${serverUrl}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: maxTokens, temperature: 0, stream: true }),
  })
  const body = await res.text()
  if (res.status !== 200) throw new Error(`/v1/completions answered ${res.status}: ${body}`)
  let text = ''
  let finishReason: string | null = null
  let done = false
  const tokens: StreamedToken[] = []
  for (const event of body.split('\n\n')) {
    if (event.trim() === '') continue
    if (!event.startsWith('data: ')) throw new Error(`not an SSE data event: ${event}`)
    const data = event.slice('data: '.length)
    if (data === '[DONE]') {
      done = true
      continue
    }
    const chunk = JSON.parse(data) as Chunk
    if (chunk.error !== undefined) throw new Error(`stream failed: ${data}`)
    for (const c of chunk.choices ?? []) {
      text += c.text ?? ''
      if (c.finish_reason) finishReason = c.finish_reason
    }
    tokens.push(...(chunk.butterfly?.tokens ?? []))
  }
  return { text, tokens, finishReason, done }
}
