import { TokenizerError } from '../errors.js'
import type { StreamDecoder, Tokenizer } from './tokenizer.js'

const UNK_ID = 0
const BOS_ID = 1
const EOS_ID = 2
const BYTE_OFFSET = 3
const MIN_VOCAB = BYTE_OFFSET + 256
// Far above any real vocabulary; bounds the work byteTokenizerJson does on a bad argument.
const MAX_VOCAB = 1 << 20

/**
 * Tokenizer for synthetic models: one token per UTF-8 byte, in the llama2/sentencepiece id
 * layout (0 `<unk>`, 1 `<s>`, 2 `</s>`, 3..258 `<0x00>`..`<0xFF>`, then `<extra_N>` padding
 * that decodes to nothing). `byteTokenizerJson` describes the same tokenizer for Hugging Face.
 */
export class ByteTokenizer implements Tokenizer {
  readonly vocabSize: number
  readonly bosTokenId = BOS_ID
  readonly eosTokenId = EOS_ID

  constructor(options: { vocabSize?: number } = {}) {
    const vocabSize = options.vocabSize ?? MIN_VOCAB
    checkVocabSize(vocabSize)
    this.vocabSize = vocabSize
  }

  encode(text: string, options?: { addBos?: boolean }): number[] {
    if (typeof text !== 'string') throw new TokenizerError(`encode expects a string, got ${typeof text}`)
    const bytes = new TextEncoder().encode(text)
    const ids: number[] = options?.addBos === true ? [BOS_ID] : []
    for (const b of bytes) ids.push(b + BYTE_OFFSET)
    return ids
  }

  decode(ids: readonly number[]): string {
    const bytes: number[] = []
    for (const id of ids) {
      const b = this.byteOf(id)
      if (b !== undefined) bytes.push(b)
    }
    return utf8Decoder().decode(Uint8Array.from(bytes))
  }

  createStreamDecoder(): StreamDecoder {
    // The WHATWG decoder in stream mode emits each character as soon as its last byte arrives
    // and yields exactly what a one-shot decode of all the bytes would.
    let decoder = utf8Decoder()
    return {
      push: (id) => {
        const b = this.byteOf(id)
        return b === undefined ? '' : decoder.decode(Uint8Array.of(b), { stream: true })
      },
      flush: () => {
        const rest = decoder.decode()
        decoder = utf8Decoder()
        return rest
      },
    }
  }

  /** The byte an id stands for, undefined for specials and extras; throws when out of range. */
  private byteOf(id: number): number | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new TokenizerError(`token id ${String(id)} is out of range [0, ${this.vocabSize})`)
    }
    return id >= BYTE_OFFSET && id < MIN_VOCAB ? id - BYTE_OFFSET : undefined
  }
}

/**
 * A Hugging Face `tokenizer.json` that behaves like `ByteTokenizer`: a BPE model with no merges
 * and `byte_fallback`, so every character falls back to its UTF-8 byte tokens. The extras are
 * special added tokens so that decoding drops them the same way it drops `<s>` and `</s>`.
 */
export function byteTokenizerJson(vocabSize: number): Record<string, unknown> {
  checkVocabSize(vocabSize)
  const vocab: Record<string, number> = { '<unk>': UNK_ID, '<s>': BOS_ID, '</s>': EOS_ID }
  for (let b = 0; b < 256; b++) vocab[bytePiece(b)] = b + BYTE_OFFSET
  for (let id = MIN_VOCAB; id < vocabSize; id++) vocab[`<extra_${id - MIN_VOCAB}>`] = id
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  })
  const addedTokens = [special(UNK_ID, '<unk>'), special(BOS_ID, '<s>'), special(EOS_ID, '</s>')]
  for (let id = MIN_VOCAB; id < vocabSize; id++) addedTokens.push(special(id, `<extra_${id - MIN_VOCAB}>`))
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Fuse' }] },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  }
}

function bytePiece(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`
}

function checkVocabSize(vocabSize: number): void {
  if (!Number.isSafeInteger(vocabSize) || vocabSize < MIN_VOCAB || vocabSize > MAX_VOCAB) {
    throw new TokenizerError(
      `byte tokenizer vocabSize must be an integer in [${MIN_VOCAB}, ${MAX_VOCAB}], got ${String(vocabSize)}`,
    )
  }
}

// ignoreBOM keeps a leading U+FEFF so that decode(encode(text)) === text for every string.
function utf8Decoder(): InstanceType<typeof TextDecoder> {
  return new TextDecoder('utf-8', { ignoreBOM: true })
}
