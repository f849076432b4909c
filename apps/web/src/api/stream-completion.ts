import { postStream, readEvents } from './sse-events.js'
import {
  type Piece,
  PieceCollector,
  type Sampling,
  type StreamResult,
  samplingFields,
} from './token-pieces.js'

/**
 * Raw completion mode: POST /v1/completions with `stream: true`, the prompt sent as is (no chat
 * template). Each text piece goes to `onPiece` with the tokens that made it.
 */
export async function streamCompletion(
  model: string,
  prompt: string,
  sampling: Sampling,
  onPiece: (piece: Piece) => void,
  signal: AbortSignal,
): Promise<StreamResult> {
  const res = await postStream(
    '/v1/completions',
    { model, prompt, ...samplingFields(sampling), stream: true, stream_options: { include_usage: true } },
    signal,
  )
  const pieces = new PieceCollector(onPiece)
  let completionTokens: number | undefined
  let finishReason: string | undefined
  await readEvents(res, (data) => {
    const chunk = data as {
      choices?: Array<{ text?: string; finish_reason?: string | null }>
      usage?: { completion_tokens?: number }
      butterfly?: { tokens?: unknown }
    }
    if (typeof chunk.usage?.completion_tokens === 'number') completionTokens = chunk.usage.completion_tokens
    finishReason = chunk.choices?.[0]?.finish_reason ?? finishReason
    pieces.add(chunk.choices?.[0]?.text, chunk.butterfly?.tokens)
  })
  return { completionTokens, finishReason }
}
