import { describe, expect, it } from 'vitest'
import { TokenizerError } from '../src/errors.js'
import { ByteTokenizer, byteTokenizerJson } from '../src/tokenizers/byte-tokenizer.js'
import { HfTokenizer } from '../src/tokenizers/hf-tokenizer.js'
import type { Tokenizer } from '../src/tokenizers/tokenizer.js'

const SAMPLES = [
  '',
  'Hello, world!',
  'To be, or not to be',
  'café é',
  '日本語のテキスト',
  'emoji 😀👍🏽 and flags 🇫🇷',
  'line one\nline two\r\n\n\ttabbed',
  'mixed: aé日😀\u0000\u007f',
]

function streamAll(tok: Tokenizer, ids: readonly number[]): string[] {
  const stream = tok.createStreamDecoder()
  const parts = ids.map((id) => stream.push(id))
  parts.push(stream.flush())
  return parts
}

/** Deterministic id lists covering specials, extras, bytes and invalid UTF-8. */
function randomIds(seed: number, count: number, vocabSize: number): number[] {
  let s = seed
  const ids: number[] = []
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    ids.push(s % vocabSize)
  }
  return ids
}

describe('ByteTokenizer', () => {
  const tok = new ByteTokenizer()

  it('uses the llama2 byte layout', () => {
    expect(tok.vocabSize).toBe(259)
    expect(tok.bosTokenId).toBe(1)
    expect(tok.eosTokenId).toBe(2)
    expect(tok.encode('A')).toEqual([0x41 + 3])
    expect(tok.encode('hi', { addBos: true })).toEqual([1, 0x68 + 3, 0x69 + 3])
    expect(tok.encode('é')).toEqual([0xc3 + 3, 0xa9 + 3])
    expect(tok.encode('日')).toEqual([0xe6 + 3, 0x97 + 3, 0xa5 + 3])
    expect(tok.encode('😀')).toEqual([0xf0 + 3, 0x9f + 3, 0x98 + 3, 0x80 + 3])
    expect(tok.encode('\n')).toEqual([13])
    expect(tok.encode('')).toEqual([])
    expect(tok.encode('', { addBos: true })).toEqual([1])
    expect(tok.encode('\u0000\u00ff')).toEqual([3, 0xc3 + 3, 0xbf + 3])
  })

  it('round-trips text, including a leading byte-order mark', () => {
    for (const s of [...SAMPLES, '\uFEFFbom']) expect(tok.decode(tok.encode(s, { addBos: true }))).toBe(s)
  })

  it('drops specials and extras when decoding', () => {
    const big = new ByteTokenizer({ vocabSize: 300 })
    expect(big.decode([1, 0x68 + 3, 0, 259, 299, 0x69 + 3, 2])).toBe('hi')
    // A special between the bytes of one character does not break the character.
    expect(big.decode([0xc3 + 3, 2, 270, 0xa9 + 3])).toBe('é')
  })

  it('replaces invalid UTF-8 with U+FFFD', () => {
    expect(tok.decode([0xff + 3])).toBe('\uFFFD')
    expect(tok.decode([0xc3 + 3, 0x61 + 3])).toBe('\uFFFDa')
    expect(tok.decode([0xe6 + 3, 0x97 + 3])).toBe('\uFFFD')
    expect(tok.decode([0x80 + 3, 0x80 + 3])).toBe('\uFFFD\uFFFD')
  })

  it.each([[-1], [259], [1.5], [Number.NaN], [Number.POSITIVE_INFINITY]])('rejects id %s', (id) => {
    expect(() => tok.decode([0x61 + 3, id])).toThrow(TokenizerError)
    expect(() => tok.createStreamDecoder().push(id)).toThrow(/out of range/)
  })

  it.each([[258], [0], [259.5], [Number.NaN], [2 ** 21]])('rejects vocabSize %s', (vocabSize) => {
    expect(() => new ByteTokenizer({ vocabSize })).toThrow(TokenizerError)
    expect(() => byteTokenizerJson(vocabSize)).toThrow(TokenizerError)
  })

  it('rejects a non-string to encode', () => {
    expect(() => tok.encode(42 as unknown as string)).toThrow(TokenizerError)
  })

  it('streams a split character only once its last byte arrives', () => {
    expect(streamAll(tok, tok.encode('a日b'))).toEqual(['a', '', '', '日', 'b', ''])
    expect(streamAll(tok, tok.encode('😀'))).toEqual(['', '', '', '😀', ''])
    expect(streamAll(tok, [1, 0xc3 + 3, 2, 0xa9 + 3])).toEqual(['', '', '', 'é', ''])
  })

  it('flushes an incomplete character as U+FFFD and then starts afresh', () => {
    const stream = tok.createStreamDecoder()
    expect(stream.push(0xe6 + 3)).toBe('')
    expect(stream.flush()).toBe('\uFFFD')
    expect(stream.push(0x61 + 3)).toBe('a')
  })

  it('streams exactly what decode returns, for arbitrary id lists', () => {
    const big = new ByteTokenizer({ vocabSize: 270 })
    for (let seed = 1; seed <= 50; seed++) {
      const ids = randomIds(seed, 40, 270)
      expect(streamAll(big, ids).join('')).toBe(big.decode(ids))
    }
  })
})

describe('byteTokenizerJson', () => {
  it('describes the byte layout', () => {
    const json = byteTokenizerJson(261)
    const model = json.model as {
      type: string
      byte_fallback: boolean
      vocab: Record<string, number>
      merges: []
    }
    expect(model.type).toBe('BPE')
    expect(model.byte_fallback).toBe(true)
    expect(model.merges).toEqual([])
    expect(Object.keys(model.vocab)).toHaveLength(261)
    expect(model.vocab['<unk>']).toBe(0)
    expect(model.vocab['<s>']).toBe(1)
    expect(model.vocab['</s>']).toBe(2)
    expect(model.vocab['<0x00>']).toBe(3)
    expect(model.vocab['<0x0A>']).toBe(13)
    expect(model.vocab['<0xFF>']).toBe(258)
    expect(model.vocab['<extra_1>']).toBe(260)
    expect(json.normalizer).toBeNull()
    expect(json.pre_tokenizer).toBeNull()
    expect(json.decoder).toEqual({ type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Fuse' }] })
    // Survives a JSON round trip, as it would when written to disk.
    expect(JSON.parse(JSON.stringify(json))).toEqual(json)
  })

  for (const vocabSize of [259, 300]) {
    describe(`HfTokenizer(byteTokenizerJson(${vocabSize})) matches ByteTokenizer`, () => {
      const bytes = new ByteTokenizer({ vocabSize })
      const hf = HfTokenizer.fromJson(JSON.parse(JSON.stringify(byteTokenizerJson(vocabSize))))

      it('has the same vocabulary size and special ids', () => {
        expect(hf.vocabSize).toBe(bytes.vocabSize)
        expect(hf.bosTokenId).toBe(bytes.bosTokenId)
        expect(hf.eosTokenId).toBe(bytes.eosTokenId)
      })

      it.each(SAMPLES.map((s) => [JSON.stringify(s), s]))('encodes and decodes %s identically', (_, text) => {
        for (const addBos of [false, true]) {
          const ids = bytes.encode(text, { addBos })
          expect(hf.encode(text, { addBos })).toEqual(ids)
          expect(hf.decode(ids)).toBe(text)
          expect(bytes.decode(ids)).toBe(text)
          expect(streamAll(hf, ids).join('')).toBe(text)
        }
      })

      it('decodes arbitrary id lists (specials, extras, invalid UTF-8) identically', () => {
        for (let seed = 1; seed <= 50; seed++) {
          const ids = randomIds(seed, 30, vocabSize)
          expect(hf.decode(ids)).toBe(bytes.decode(ids))
          expect(streamAll(hf, ids).join('')).toBe(bytes.decode(ids))
        }
      })

      it('rejects the same out-of-range ids', () => {
        for (const id of [-1, vocabSize, 0.5]) {
          expect(() => hf.decode([id])).toThrow(TokenizerError)
          expect(() => bytes.decode([id])).toThrow(TokenizerError)
        }
      })
    })
  }
})
