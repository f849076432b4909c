import { streamPieces } from './stream-pieces.js'
import { type Piece, type Sampling, type StreamResult, samplingFields } from './token-pieces.js'

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
  return streamPieces('/v1/completions', { model, prompt, ...samplingFields(sampling) }, onPiece, signal)
}
