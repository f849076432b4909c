import { Tokenizer as HfTokenizersLibrary } from '@huggingface/tokenizers'
import { TokenizerError } from '../errors.js'
import type { StreamDecoder, Tokenizer } from './tokenizer.js'

/**
 * The part of @huggingface/tokenizers we use. The package's .d.ts files import each other
 * without file extensions, which NodeNext resolution rejects; under skipLibCheck that failure
 * is silent and the class arrives typed `any`. Casting it to this narrow interface keeps the
 * rest of this file type-checked without pulling the library's types into core.
 */
interface LibraryTokenizer {
  encode(text: string, options: { add_special_tokens: boolean }): { ids: unknown[] }
  decode(
    ids: number[],
    options: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean },
  ): string
  token_to_id(token: string): number | undefined
  get_vocab(withAddedTokens?: boolean): Map<unknown, number>
  get_added_tokens_decoder(): Map<number, { content: string }>
}
const LibraryTokenizerClass = HfTokenizersLibrary as new (json: object, config: object) => LibraryTokenizer

const MODEL_TYPES = ['BPE', 'WordPiece', 'Unigram']
/** Bounds memory: the library allocates an array as long as the largest id. */
const MAX_TOKEN_ID = (1 << 21) - 1
const BOS_CANDIDATES = ['<s>', '<|begin_of_text|>', '<bos>', '<|startoftext|>']
const EOS_CANDIDATES = ['</s>', '<|end_of_text|>', '<|endoftext|>', '<eos>']

/**
 * A Hugging Face `tokenizer.json` run by @huggingface/tokenizers. Decoding skips special tokens
 * and never applies transformers' `clean_up_tokenization_spaces`: that is a Python-side
 * post-process outside tokenizer.json semantics, and it would break prefix-stable streaming.
 * Like Hugging Face, `encode` turns added-token text in the input (e.g. a literal `</s>`) into
 * that token's id.
 */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number
  readonly bosTokenId: number | undefined
  readonly eosTokenId: number | undefined
  private readonly lib: LibraryTokenizer

  private constructor(
    lib: LibraryTokenizer,
    vocabSize: number,
    bos: number | undefined,
    eos: number | undefined,
  ) {
    this.lib = lib
    this.vocabSize = vocabSize
    this.bosTokenId = bos
    this.eosTokenId = eos
  }

  /**
   * `tokenizerJson` is the parsed tokenizer.json; `tokenizerConfig` the parsed
   * tokenizer_config.json, whose bos_token / eos_token (when present) name the BOS / EOS tokens.
   */
  static fromJson(tokenizerJson: unknown, tokenizerConfig?: unknown): HfTokenizer {
    const json = checkTokenizerJson(tokenizerJson)
    if (tokenizerConfig !== undefined && !isRecord(tokenizerConfig)) {
      throw new TokenizerError(
        `tokenizer_config.json must be a JSON object, got ${describe(tokenizerConfig)}`,
      )
    }
    const config = tokenizerConfig ?? {}
    let lib: LibraryTokenizer
    try {
      lib = new LibraryTokenizerClass(json, config)
    } catch (err) {
      throw new TokenizerError(`tokenizer.json rejected by @huggingface/tokenizers: ${messageOf(err)}`, {
        cause: err,
      })
    }
    let maxId = -1
    for (const id of lib.get_vocab(true).values()) {
      if (!Number.isSafeInteger(id) || id < 0 || id > MAX_TOKEN_ID) {
        throw new TokenizerError(`tokenizer.json has an invalid token id ${String(id)}`)
      }
      if (id > maxId) maxId = id
    }
    if (maxId < 0) throw new TokenizerError('tokenizer.json has an empty vocabulary')
    const bos = specialId(lib, config, 'bos_token', BOS_CANDIDATES)
    const eos = specialId(lib, config, 'eos_token', EOS_CANDIDATES)
    return new HfTokenizer(lib, maxId + 1, bos, eos)
  }

  encode(text: string, options?: { addBos?: boolean }): number[] {
    if (typeof text !== 'string') throw new TokenizerError(`encode expects a string, got ${typeof text}`)
    const ids: number[] = options?.addBos === true && this.bosTokenId !== undefined ? [this.bosTokenId] : []
    for (const id of this.lib.encode(text, { add_special_tokens: false }).ids) {
      // The library yields undefined for a piece it cannot map when the model has no <unk>.
      if (typeof id !== 'number' || !Number.isInteger(id)) {
        throw new TokenizerError('text contains a piece the tokenizer cannot represent (and it has no <unk>)')
      }
      ids.push(id)
    }
    return ids
  }

  /** The id of a token's exact text (an added token such as `<|im_end|>`, or a vocabulary piece). */
  tokenId(token: string): number | undefined {
    const id = this.lib.token_to_id(token)
    return typeof id === 'number' && Number.isInteger(id) ? id : undefined
  }

  decode(ids: readonly number[]): string {
    for (const id of ids) this.checkId(id)
    if (ids.length === 0) return '' // the library rejects an empty list
    return this.lib.decode([...ids], { skip_special_tokens: true, clean_up_tokenization_spaces: false })
  }

  /**
   * Decodes a short window of ids each step, in the manner of Hugging Face's DecodeStream:
   * `context` holds the ids whose text was already emitted (decoders such as Metaspace or
   * Strip need a left neighbour to render a token), `pending` the ids not yet emitted. New text
   * is released only once the window's decode grows and does not end in U+FFFD, so a character
   * split across byte-fallback tokens is held back until its last byte arrives.
   */
  createStreamDecoder(): StreamDecoder {
    let context: number[] = []
    let contextText = ''
    let pending: number[] = []
    const release = (final: boolean): string => {
      if (pending.length === 0) return ''
      const text = this.decode([...context, ...pending])
      if (!final && (text.length <= contextText.length || text.endsWith('\uFFFD'))) return ''
      // The window's text normally extends the context's; if a decoder ever rewrote the
      // context, emitted text cannot be taken back, so continue from where they diverge.
      const out = text.slice(commonPrefixLength(text, contextText))
      context = pending
      contextText = this.decode(context)
      pending = []
      return out
    }
    return {
      push: (id) => {
        this.checkId(id)
        pending.push(id)
        return release(false)
      },
      flush: () => {
        const out = release(true)
        context = []
        contextText = ''
        return out
      },
    }
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new TokenizerError(`token id ${String(id)} is out of range [0, ${this.vocabSize})`)
    }
  }
}

/** Checks what the library would otherwise crash on or mis-read, and fills keys it requires. */
function checkTokenizerJson(json: unknown): Record<string, unknown> {
  if (!isRecord(json)) throw new TokenizerError(`tokenizer.json must be a JSON object, got ${describe(json)}`)
  const model = json.model
  if (!isRecord(model)) throw new TokenizerError('tokenizer.json has no "model" object')
  if (typeof model.type !== 'string' || !MODEL_TYPES.includes(model.type)) {
    throw new TokenizerError(
      `tokenizer.json model type ${JSON.stringify(model.type) ?? 'undefined'} is not one of ${MODEL_TYPES.join(', ')}`,
    )
  }
  if (model.type === 'Unigram') {
    const vocab = model.vocab
    if (!Array.isArray(vocab) || !vocab.every((e) => Array.isArray(e) && typeof e[0] === 'string')) {
      throw new TokenizerError('Unigram model "vocab" must be an array of [piece, score] pairs')
    }
  } else {
    if (!isRecord(model.vocab)) throw new TokenizerError(`${model.type} model "vocab" must be an object`)
    for (const [piece, id] of Object.entries(model.vocab)) {
      if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) > MAX_TOKEN_ID) {
        throw new TokenizerError(`vocab entry ${JSON.stringify(piece)} has invalid id ${String(id)}`)
      }
    }
    if (model.type === 'BPE' && !Array.isArray(model.merges)) {
      throw new TokenizerError('BPE model "merges" must be an array')
    }
  }
  const added = json.added_tokens ?? []
  if (!Array.isArray(added)) throw new TokenizerError('tokenizer.json "added_tokens" must be an array')
  for (const t of added) {
    if (!isRecord(t) || typeof t.content !== 'string' || !Number.isSafeInteger(t.id)) {
      throw new TokenizerError(
        `added token ${JSON.stringify(t)} needs a string "content" and an integer "id"`,
      )
    }
    if ((t.id as number) < 0 || (t.id as number) > MAX_TOKEN_ID) {
      throw new TokenizerError(`added token ${JSON.stringify(t.content)} has invalid id ${String(t.id)}`)
    }
  }
  // The library insists these keys exist; null means "none" in tokenizer.json.
  return {
    ...json,
    added_tokens: added,
    normalizer: json.normalizer ?? null,
    pre_tokenizer: json.pre_tokenizer ?? null,
    post_processor: json.post_processor ?? null,
    decoder: json.decoder ?? null,
  }
}

/**
 * tokenizer_config.json names the token as a string or as a serialized AddedToken; an explicit
 * null means the model has none. Without the key we look for the usual added tokens.
 */
function specialId(
  lib: LibraryTokenizer,
  config: Record<string, unknown>,
  key: 'bos_token' | 'eos_token',
  candidates: readonly string[],
): number | undefined {
  if (key in config) {
    const entry = config[key]
    if (entry === null) return undefined
    const content = isRecord(entry) ? entry.content : entry
    if (typeof content !== 'string') {
      throw new TokenizerError(
        `tokenizer_config.json ${key} must be a string, an object with "content", or null`,
      )
    }
    const id = lib.token_to_id(content)
    if (id === undefined)
      throw new TokenizerError(
        `tokenizer_config.json ${key} ${JSON.stringify(content)} is not in the vocabulary`,
      )
    return id
  }
  const added = new Map<string, number>()
  for (const [id, token] of lib.get_added_tokens_decoder()) added.set(token.content, id)
  for (const c of candidates) {
    const id = added.get(c)
    if (id !== undefined) return id
  }
  return undefined
}

function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++
  return i
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
