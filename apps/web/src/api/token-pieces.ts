import type { StepProvenance } from '@butterfly/core'

/** Who computed and who confirmed each stage's step for one token (the server's `butterfly` extension). */
export interface TokenProvenance {
  readonly stages: ReadonlyArray<StepProvenance | null>
  /** Positions the generation rolled back (failed window checks) before this token was sent. */
  readonly rolledBack?: number
}

/** A piece of streamed text and the tokens that produced it. */
export interface Piece {
  readonly text: string
  readonly tokens: readonly TokenProvenance[]
}

/** The sampling settings every request carries. */
export interface Sampling {
  readonly maxTokens: number
  readonly temperature: number
  readonly topP: number
  /** Undefined: the server picks; a number makes sampling repeatable. */
  readonly seed: number | undefined
}

/** The OpenAI request fields for `s`. */
export function samplingFields(s: Sampling): Record<string, number> {
  return {
    max_tokens: s.maxTokens,
    temperature: s.temperature,
    top_p: s.topP,
    ...(s.seed === undefined ? {} : { seed: s.seed }),
  }
}

/**
 * Pairs streamed text with the tokens that made it. The server attaches a token's provenance
 * to the next chunk it sends, which may carry no text (the chat's opening role chunk, or a
 * token that ends inside a multi-byte character): those tokens wait for the next text.
 */
export class PieceCollector {
  private held: TokenProvenance[] = []

  constructor(private readonly onPiece: (piece: Piece) => void) {}

  add(text: string | undefined, tokens: unknown): void {
    if (Array.isArray(tokens)) this.held.push(...(tokens as TokenProvenance[]))
    if (typeof text !== 'string' || text === '') return
    const piece = { text, tokens: this.held }
    this.held = []
    this.onPiece(piece)
  }

  /** Tokens that never brought text (the stream ended inside a character). */
  leftover(): readonly TokenProvenance[] {
    return this.held
  }
}

export interface StreamResult {
  /** Tokens generated, as the server counted them (its usage chunk). */
  readonly completionTokens: number | undefined
  readonly finishReason: string | undefined
}
