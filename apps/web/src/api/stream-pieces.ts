import { postStream, readEvents } from './sse-events.js'
import { type Piece, PieceCollector, type StreamResult } from './token-pieces.js'

interface StreamChunk {
  choices?: Array<{ text?: string; delta?: { content?: string }; finish_reason?: string | null }>
  usage?: { completion_tokens?: number }
  butterfly?: { tokens?: unknown }
}

/**
 * POSTs a streaming request to either OpenAI endpoint and hands each text piece, with the tokens
 * that made it, to `onPiece`; the two endpoints differ only in where a chunk keeps its text.
 */
export async function streamPieces(
  url: '/v1/completions' | '/v1/chat/completions',
  body: Record<string, unknown>,
  onPiece: (piece: Piece) => void,
  signal: AbortSignal,
): Promise<StreamResult> {
  const res = await postStream(
    url,
    { ...body, stream: true, stream_options: { include_usage: true } },
    signal,
  )
  const pieces = new PieceCollector(onPiece)
  let completionTokens: number | undefined
  let finishReason: string | undefined
  await readEvents(res, (data) => {
    const chunk = data as StreamChunk
    if (typeof chunk.usage?.completion_tokens === 'number') completionTokens = chunk.usage.completion_tokens
    const choice = chunk.choices?.[0]
    finishReason = choice?.finish_reason ?? finishReason
    pieces.add(url === '/v1/completions' ? choice?.text : choice?.delta?.content, chunk.butterfly?.tokens)
  })
  return { completionTokens, finishReason }
}
