/** Text <-> token ids. Implementations must validate ids and never throw on arbitrary text. */
export interface Tokenizer {
  /** One past the largest valid id. */
  readonly vocabSize: number
  readonly bosTokenId: number | undefined
  readonly eosTokenId: number | undefined
  /** `addBos` prepends the BOS id when the tokenizer has one (and is a no-op otherwise). */
  encode(text: string, options?: { addBos?: boolean }): number[]
  /** Special tokens decode to nothing; invalid UTF-8 becomes U+FFFD. */
  decode(ids: readonly number[]): string
  createStreamDecoder(): StreamDecoder
}

/**
 * Turns generated ids into text as they arrive. The concatenation of every `push` result and
 * the final `flush` equals `decode` of all the ids.
 */
export interface StreamDecoder {
  /** Text that is now complete; partial UTF-8 sequences are held back until they complete. */
  push(id: number): string
  /** Everything still held back (incomplete sequences become U+FFFD). Ends the stream. */
  flush(): string
}
