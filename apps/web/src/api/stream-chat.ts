import { streamPieces } from './stream-pieces.js'
import { type Piece, type Sampling, type StreamResult, samplingFields } from './token-pieces.js'

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
  return streamPieces(
    '/v1/chat/completions',
    { model, messages, ...samplingFields(sampling) },
    onPiece,
    signal,
  )
}
