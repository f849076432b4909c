import { postStream, readEvents } from './sse-events.js'
import {
  type Piece,
  PieceCollector,
  type Sampling,
  type StreamResult,
  samplingFields,
} from './token-pieces.js'

export interface ChatTurn {
  readonly role: 'system' | 'user' | 'assistant'
  readonly content: string
}

/**
 * A chat turn: POST /v1/chat/completions with `stream: true`, so the server renders the
 * history with the model's own chat template. Each text piece goes to `onPiece`.
 */
export async function streamChat(
  model: string,
  messages: readonly ChatTurn[],
  sampling: Sampling,
  onPiece: (piece: Piece) => void,
  signal: AbortSignal,
): Promise<StreamResult> {
  const res = await postStream(
    '/v1/chat/completions',
    { model, messages, ...samplingFields(sampling), stream: true, stream_options: { include_usage: true } },
    signal,
  )
  const pieces = new PieceCollector(onPiece)
  let completionTokens: number | undefined
  let finishReason: string | undefined
  await readEvents(res, (data) => {
    const chunk = data as {
      choices?: Array<{ delta?: { content?: string }; finish_reason?: string | null }>
      usage?: { completion_tokens?: number }
      butterfly?: { tokens?: unknown }
    }
    if (typeof chunk.usage?.completion_tokens === 'number') completionTokens = chunk.usage.completion_tokens
    finishReason = chunk.choices?.[0]?.finish_reason ?? finishReason
    pieces.add(chunk.choices?.[0]?.delta?.content, chunk.butterfly?.tokens)
  })
  return { completionTokens, finishReason }
}
