import {
  Llama2cTokenizerRef,
  mulberry32 as rng,
  sentencepieceSpelling,
  testVocab,
  tokenizerBin,
} from '@butterfly/testing'
import { describe, expect, test } from 'vitest'
import { TokenizerError } from '../src/errors.js'
import { llama2cTokenizerJson, readLlama2cTokenizer } from '../src/formats/llama2c-tokenizer.js'
import { spmTokenizerJson } from '../src/formats/spm-tokenizer-json.js'
import { HfTokenizer } from '../src/tokenizers/hf-tokenizer.js'
import { bytesSource } from '../src/weights/byte-source.js'

const vocab = testVocab()
const V = vocab.pieces.length
const ref = new Llama2cTokenizerRef(vocab.pieces, vocab.scores)

async function converted(): Promise<HfTokenizer> {
  const { json, config } = await llama2cTokenizerJson(
    bytesSource('tokenizer.bin', tokenizerBin(vocab.pieces, vocab.scores)),
    V,
  )
  // Through JSON text, as the file on disk will be.
  return HfTokenizer.fromJson(JSON.parse(JSON.stringify(json)), JSON.parse(JSON.stringify(config)))
}

const TEXTS = [
  'hello world',
  'the',
  'The end.',
  'Hello, the world and the rest',
  ' leading space',
  'trailing space ',
  '  two  spaces  ',
  '   ',
  ' ',
  'héllo é t ét',
  '中文',
  '中文字 and 文中',
  '😀 emoji 🦋',
  'line\nbreak\ttab',
  'ZZZ qqq',
  'e\u0301 combining',
]

describe('tokenizer.bin converted to tokenizer.json', () => {
  test('hand-computed vectors', async () => {
    const tok = await converted()
    const pieces = (ids: number[]) => ids.map((id) => vocab.pieces[id])
    // ' ' dummy prefix, then by score: he, ll, hell, hello, ' hello', or, wor (which beats ' w');
    // 'rl' lost its r to 'or', and 'worl' is no piece.
    expect(pieces(tok.encode('hello world'))).toEqual([' hello', ' ', 'wor', 'l', 'd'])
    expect(pieces(tok.encode('中文'))).toEqual([' ', '中文'])
    // U+1F600 is not in the vocabulary: its four UTF-8 bytes at id byte + 3
    expect(tok.encode('😀')).toEqual([vocab.pieces.indexOf(' '), 0xf0 + 3, 0x9f + 3, 0x98 + 3, 0x80 + 3])
    expect(tok.encode('', { addBos: true })).toEqual([1])
    expect(tok.encode('')).toEqual([])
    expect(tok.bosTokenId).toBe(1)
    expect(tok.eosTokenId).toBe(2)
    expect(tok.vocabSize).toBe(V)
  })

  test.each(TEXTS)('encode and decode agree with run.c: %j', async (text) => {
    const tok = await converted()
    expect(tok.encode(text)).toEqual(ref.encode(text, false))
    const withBos = tok.encode(text, { addBos: true })
    expect(withBos).toEqual(ref.encode(text, true))
    expect(tok.decode(withBos)).toBe(ref.decode(withBos))
    expect(tok.decode(withBos)).toBe(text)
  })

  test('random strings encode as run.c encodes them', async () => {
    const tok = await converted()
    const r = rng(5)
    const alphabet = [
      ' ',
      'e',
      't',
      'h',
      'l',
      'o',
      'w',
      'r',
      'd',
      'a',
      'n',
      'é',
      '中',
      '文',
      '😀',
      'x',
      '\n',
      ',',
      'T',
    ]
    for (let i = 0; i < 300; i++) {
      const text = Array.from(
        { length: 1 + Math.floor(r() * 24) },
        () => alphabet[Math.floor(r() * alphabet.length)],
      ).join('')
      expect(tok.encode(text, { addBos: true }), JSON.stringify(text)).toEqual(ref.encode(text, true))
      expect(tok.decode(tok.encode(text, { addBos: true }))).toBe(text)
    }
  })

  test('streamed decoding of byte-fallback pieces equals one-shot decoding', async () => {
    const tok = await converted()
    const ids = tok.encode('a 😀 中文 é', { addBos: true })
    const stream = tok.createStreamDecoder()
    const text = ids.map((id) => stream.push(id)).join('') + stream.flush()
    expect(text).toBe(tok.decode(ids))
  })

  test('the GGUF spelling of the same vocabulary gives the same tokenizer.json', async () => {
    const fromBin = await llama2cTokenizerJson(
      bytesSource('tokenizer.bin', tokenizerBin(vocab.pieces, vocab.scores)),
      V,
    )
    const { tokens, types } = sentencepieceSpelling(vocab.pieces)
    const fromGguf = spmTokenizerJson({
      pieces: tokens,
      scores: vocab.scores,
      types,
      bosId: 1,
      eosId: 2,
      unkId: 0,
    })
    expect(JSON.stringify(fromGguf.json)).toBe(JSON.stringify(fromBin.json))
    expect(fromGguf.config).toEqual(fromBin.config)
  })

  test('pieces are read in sentencepiece spelling', async () => {
    const v = await readLlama2cTokenizer(
      bytesSource('tokenizer.bin', tokenizerBin(vocab.pieces, vocab.scores)),
      V,
    )
    expect(v.pieces.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>'])
    expect(v.pieces).toContain('\u2581hello')
    expect(v.pieces).toContain('é\u2581t')
    expect(Array.from(v.types).slice(0, 4)).toEqual([2, 3, 3, 6])
  })
})

describe('corrupt tokenizer.bin files', () => {
  const good = () => tokenizerBin(vocab.pieces, vocab.scores)
  const i32 = (v: number) => new Uint8Array(Int32Array.of(v).buffer)
  const entry = (piece: Uint8Array, length = piece.byteLength) =>
    new Uint8Array([...new Uint8Array(Float32Array.of(-1).buffer), ...i32(length), ...piece])
  const cases: Array<[string, () => Uint8Array, number, RegExp]> = [
    ['an empty file', () => new Uint8Array(0), V, /max_token_length: needs 4 bytes/],
    [
      'max_token_length 0',
      () => new Uint8Array([...i32(0), ...good().subarray(4)]),
      V,
      /max_token_length 0 is outside/,
    ],
    [
      'a huge max_token_length',
      () => new Uint8Array([...i32(1 << 30), ...good().subarray(4)]),
      V,
      /max_token_length \d+ is outside/,
    ],
    ['a file cut mid-token', () => good().subarray(0, 1001), V, /token \d+ of \d+: needs \d+ bytes/],
    ['fewer tokens than the model has', () => good(), V + 1, /token 317 of 318: needs 4 bytes/],
    ['more tokens than the model has', () => good(), V - 1, /bytes follow the 316 tokens/],
    [
      'a negative length',
      () => new Uint8Array([...i32(8), ...entry(new Uint8Array(0), -5)]),
      1,
      /token 0 has length -5/,
    ],
    [
      'a length beyond max_token_length',
      () => new Uint8Array([...i32(2), ...entry(new TextEncoder().encode('abc'))]),
      1,
      /length 3, outside/,
    ],
    [
      'a length beyond the file',
      () => new Uint8Array([...i32(100), ...entry(new Uint8Array(2), 50)]),
      1,
      /needs 50 bytes/,
    ],
    [
      'invalid UTF-8',
      () => new Uint8Array([...i32(4), ...entry(Uint8Array.of(0xff, 0xfe))]),
      1,
      /not valid UTF-8/,
    ],
  ]
  test.each(cases)('%s is ERR_TOKENIZER', async (_, bytes, vocabSize, message) => {
    const err = await readLlama2cTokenizer(bytesSource('tok.bin', bytes()), vocabSize).catch(
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(TokenizerError)
    expect((err as TokenizerError).code).toBe('ERR_TOKENIZER')
    expect((err as Error).message).toMatch(/^tok\.bin: /)
    expect((err as Error).message).toMatch(message)
  })

  test('a duplicated piece cannot become tokenizer.json', async () => {
    const pieces = [...vocab.pieces]
    pieces[300] = 'the'
    const bytes = tokenizerBin(pieces, vocab.scores)
    await expect(llama2cTokenizerJson(bytesSource('tok.bin', bytes), V)).rejects.toThrow(
      /"the" appears twice .*ids \d+ and 300/,
    )
  })
})
