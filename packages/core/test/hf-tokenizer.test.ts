import { describe, expect, it } from 'vitest'
import { TokenizerError } from '../src/errors.js'
import { byteTokenizerJson } from '../src/tokenizers/byte-tokenizer.js'
import { HfTokenizer } from '../src/tokenizers/hf-tokenizer.js'
import type { Tokenizer } from '../src/tokenizers/tokenizer.js'

const special = (id: number, content: string) => ({
  id,
  content,
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: false,
  special: true,
})

const PIECES = ['▁', 'h', 'e', 'l', 'o', 'w', 'r', 'd', 'he', 'll', 'hell', 'hello', '▁hello']
PIECES.push('or', 'wor', 'worl', 'world', '▁world')
const MERGES = ['h e', 'l l', 'he ll', 'hell o', '▁ hello', 'o r', 'w or', 'wor l', 'worl d', '▁ world']

/** A miniature Llama-2 tokenizer.json: sentencepiece-style BPE with byte fallback. */
function llamaJson(): Record<string, unknown> {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 }
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = b + 3
  PIECES.forEach((p, i) => {
    vocab[p] = 259 + i
  })
  return {
    version: '1.0',
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges: MERGES,
    },
  }
}

/** GPT-2's byte -> printable-character table, which ByteLevel tokenizers store pieces in. */
function bytesToUnicode(): string[] {
  const table: string[] = []
  let extra = 0
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
    table.push(String.fromCodePoint(printable ? b : 256 + extra++))
  }
  return table
}

/** A miniature Qwen2-style tokenizer.json: byte-level BPE with no merges. */
function byteLevelJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {}
  bytesToUnicode().forEach((c, b) => {
    vocab[c] = b
  })
  return {
    added_tokens: [special(256, '<|endoftext|>'), special(257, '<|im_start|>'), special(258, '<|im_end|>')],
    normalizer: { type: 'NFC' },
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    model: { type: 'BPE', unk_token: null, byte_fallback: false, vocab, merges: [] },
  }
}

function streamAll(tok: Tokenizer, ids: readonly number[]): string[] {
  const stream = tok.createStreamDecoder()
  const parts = ids.map((id) => stream.push(id))
  parts.push(stream.flush())
  return parts
}

const BYTE = (b: number) => b + 3

describe('HfTokenizer (Llama-style BPE with byte fallback)', () => {
  const tok = HfTokenizer.fromJson(llamaJson())
  const HELLO = 259 + PIECES.indexOf('▁hello')
  const WORLD = 259 + PIECES.indexOf('▁world')
  const SPACE = 259

  it('finds the vocabulary size and <s> / </s> among the added tokens', () => {
    expect(tok.vocabSize).toBe(259 + PIECES.length)
    expect(tok.bosTokenId).toBe(1)
    expect(tok.eosTokenId).toBe(2)
  })

  it('encodes known vectors; BOS only when asked', () => {
    expect(tok.encode('hello world')).toEqual([HELLO, WORLD])
    expect(tok.encode('hello world', { addBos: true })).toEqual([1, HELLO, WORLD])
    expect(tok.encode('hé')).toEqual([SPACE, 259 + PIECES.indexOf('h'), BYTE(0xc3), BYTE(0xa9)])
    expect(tok.encode('')).toEqual([])
    expect(tok.encode('', { addBos: true })).toEqual([1])
  })

  it('treats added-token text in the input as that token, like Hugging Face', () => {
    expect(tok.encode('hello</s>')).toEqual([HELLO, 2])
  })

  it('decodes, dropping special tokens', () => {
    expect(tok.decode([1, HELLO, WORLD, 2])).toBe('hello world')
    expect(tok.decode([])).toBe('')
    expect(tok.decode([BYTE(0xff)])).toBe('\uFFFD')
    for (const s of ['hello world', 'hé 日本語 😀', 'a\nb\n\n  c', 'world hello']) {
      expect(tok.decode(tok.encode(s, { addBos: true }))).toBe(s)
    }
  })

  it('streams with the spacing of a full decode and holds split characters back', () => {
    const ids = tok.encode('hello 日本 world', { addBos: true })
    const parts = streamAll(tok, ids)
    expect(parts.join('')).toBe('hello 日本 world')
    expect(parts).toEqual(['', 'hello', ' ', '', '', '日', '', '', '本', ' world', ''])
  })

  it('flushes an incomplete character as U+FFFD', () => {
    const stream = tok.createStreamDecoder()
    expect(stream.push(HELLO)).toBe('hello')
    expect(stream.push(BYTE(0xf0))).toBe('')
    expect(stream.push(BYTE(0x9f))).toBe('')
    expect(stream.flush()).toBe('\uFFFD')
  })

  it('streams exactly what decode returns, for arbitrary id lists', () => {
    let s = 7
    for (let round = 0; round < 40; round++) {
      const ids: number[] = []
      for (let i = 0; i < 25; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0
        ids.push(s % tok.vocabSize)
      }
      expect(streamAll(tok, ids).join('')).toBe(tok.decode(ids))
    }
  })

  it.each([[-1], [259 + PIECES.length], [2.5], [Number.NaN]])('rejects id %s', (id) => {
    expect(() => tok.decode([HELLO, id])).toThrow(TokenizerError)
    const stream = tok.createStreamDecoder()
    expect(stream.push(HELLO)).toBe('hello')
    expect(() => stream.push(id)).toThrow(/out of range/)
    // A rejected id leaves the stream intact.
    expect(stream.push(WORLD)).toBe(' world')
  })

  it('takes BOS / EOS from tokenizer_config.json', () => {
    const withConfig = HfTokenizer.fromJson(llamaJson(), {
      bos_token: { __type: 'AddedToken', content: '</s>', lstrip: false },
      eos_token: '<unk>',
    })
    expect(withConfig.bosTokenId).toBe(2)
    expect(withConfig.eosTokenId).toBe(0)
    const noBos = HfTokenizer.fromJson(llamaJson(), { bos_token: null })
    expect(noBos.bosTokenId).toBeUndefined()
    expect(noBos.eosTokenId).toBe(2)
    expect(noBos.encode('hello', { addBos: true })).toEqual([HELLO])
  })

  it.each([
    [{ bos_token: '<nope>' }, /not in the vocabulary/],
    [{ eos_token: 42 }, /eos_token must be/],
    [{ bos_token: { content: 7 } }, /bos_token must be/],
    ['config', /tokenizer_config.json must be a JSON object/],
    [null, /tokenizer_config.json must be a JSON object/],
  ])('rejects tokenizer_config %j', (config, message) => {
    expect(() => HfTokenizer.fromJson(llamaJson(), config)).toThrow(message)
  })
})

describe('HfTokenizer (Qwen2-style byte-level BPE)', () => {
  const tok = HfTokenizer.fromJson(byteLevelJson())
  const table = bytesToUnicode()

  it('has <|endoftext|> as EOS and no BOS', () => {
    expect(tok.vocabSize).toBe(259)
    expect(tok.bosTokenId).toBeUndefined()
    expect(tok.eosTokenId).toBe(256)
    expect(tok.encode('hi', { addBos: true })).toEqual([0x68, 0x69])
  })

  it('encodes bytes as their pieces and round-trips', () => {
    expect(tok.encode('é')).toEqual([0xc3, 0xa9])
    expect(table[0xc3]).toBe('Ã')
    for (const s of ['Hello world', 'é 日本語 😀', 'tabs\tand\nnewlines'])
      expect(tok.decode(tok.encode(s))).toBe(s)
    expect(tok.decode([0x68, 258, 0x69, 256])).toBe('hi')
  })

  it('streams a split character once complete', () => {
    expect(streamAll(tok, tok.encode('a😀b'))).toEqual(['a', '', '', '', '😀', 'b', ''])
  })
})

describe('HfTokenizer.fromJson rejects malformed tokenizer.json', () => {
  const bpe = (model: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    model: { type: 'BPE', vocab: { a: 0 }, merges: [], ...model },
    ...extra,
  })
  it.each([
    ['null', null, /must be a JSON object, got null/],
    ['a number', 42, /must be a JSON object, got number/],
    ['a string', '{"model":{}}', /must be a JSON object, got string/],
    ['an array', [], /must be a JSON object, got an array/],
    ['no model', {}, /no "model" object/],
    ['model null', { model: null }, /no "model" object/],
    ['no model type', { model: { vocab: {} } }, /model type undefined is not one of/],
    ['unknown model type', { model: { type: 'Nope', vocab: {} } }, /model type "Nope" is not one of/],
    ['BPE without vocab', { model: { type: 'BPE', merges: [] } }, /"vocab" must be an object/],
    ['BPE without merges', { model: { type: 'BPE', vocab: {} } }, /"merges" must be an array/],
    ['negative id', bpe({ vocab: { a: -1 } }), /invalid id -1/],
    ['fractional id', bpe({ vocab: { a: 0.5 } }), /invalid id 0.5/],
    ['huge id', bpe({ vocab: { a: 2 ** 40 } }), /invalid id/],
    ['string id', bpe({ vocab: { a: '0' } }), /invalid id 0/],
    ['Unigram vocab object', { model: { type: 'Unigram', vocab: {} } }, /array of \[piece, score\]/],
    ['added_tokens not array', bpe({}, { added_tokens: {} }), /"added_tokens" must be an array/],
    ['added token without id', bpe({}, { added_tokens: [{ content: 'x' }] }), /integer "id"/],
    ['added token huge id', bpe({}, { added_tokens: [{ content: 'x', id: 1e9 }] }), /invalid id/],
    [
      'unknown decoder',
      bpe({}, { decoder: { type: 'Bogus' } }),
      /rejected by @huggingface\/tokenizers: .*Bogus/,
    ],
    [
      'unknown normalizer',
      bpe({}, { normalizer: { type: 'Bogus' } }),
      /rejected by @huggingface\/tokenizers/,
    ],
    ['bad merges entries', bpe({ merges: [5] }), /rejected by @huggingface\/tokenizers/],
    ['empty vocabulary', bpe({ vocab: {} }), /empty vocabulary/],
  ])('%s', (_, json, message) => {
    let caught: unknown
    try {
      HfTokenizer.fromJson(json)
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(TokenizerError)
    expect((caught as TokenizerError).code).toBe('ERR_TOKENIZER')
    expect((caught as Error).message).toMatch(message)
  })

  it('accepts a minimal file, filling the optional keys', () => {
    const { model, decoder } = byteTokenizerJson(259)
    const tok = HfTokenizer.fromJson({ model, decoder })
    expect(tok.vocabSize).toBe(259)
    expect(tok.decode(tok.encode('ok'))).toBe('ok')
  })
})
