import { GGML, type GgufMeta, ggufLlamaFile, knownWeights, testDims, testVocab } from '@butterfly/testing'
import { describe, expect, test } from 'vitest'
import { TokenizerError } from '../src/errors.js'
import { openGgufModel } from '../src/formats/gguf-model.js'
import { HfTokenizer } from '../src/tokenizers/hf-tokenizer.js'
import { bytesSource } from '../src/weights/byte-source.js'

/** GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest for U+0100 onwards. */
function byteChars(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)
  let next = 256
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable(b) ? b : next++))
}

const MERGES = ['Ġ t', 'h e', 'Ġt he', '1 2', '12 3', 'o t', 'Ġ o', 'Ġo t', 'he r', 'Ġot her']
const TOKENS = [
  ...byteChars(),
  'Ġt',
  'he',
  'Ġthe',
  '12',
  '123',
  'ot',
  'Ġo',
  'Ġot',
  'her',
  'Ġother',
  '<|begin_of_text|>',
  '<|end_of_text|>',
]
const BOS = TOKENS.indexOf('<|begin_of_text|>')
const EOS = TOKENS.indexOf('<|end_of_text|>')

const spmKeys = [
  'tokenizer.ggml.model',
  'tokenizer.ggml.tokens',
  'tokenizer.ggml.scores',
  'tokenizer.ggml.token_type',
  'tokenizer.ggml.bos_token_id',
  'tokenizer.ggml.eos_token_id',
  'tokenizer.ggml.unknown_token_id',
]
const vocab = testVocab()
const weights = knownWeights(testDims(vocab.pieces.length), 51, true)

function gpt2Gguf(pre: string | undefined, extra: GgufMeta[] = [], merges = MERGES): Uint8Array {
  const meta: GgufMeta[] = [
    { key: 'tokenizer.ggml.model', type: 'string', value: 'gpt2' },
    ...(pre === undefined ? [] : [{ key: 'tokenizer.ggml.pre', type: 'string' as const, value: pre }]),
    { key: 'tokenizer.ggml.tokens', type: 'strings', value: TOKENS },
    {
      key: 'tokenizer.ggml.token_type',
      type: 'i32s',
      value: TOKENS.map((t) => (t.startsWith('<|') ? 3 : 1)),
    },
    { key: 'tokenizer.ggml.merges', type: 'strings', value: merges },
    { key: 'tokenizer.ggml.bos_token_id', type: 'u32', value: BOS },
    { key: 'tokenizer.ggml.eos_token_id', type: 'u32', value: EOS },
    ...extra,
  ]
  return ggufLlamaFile(weights, vocab, GGML.F32, meta, spmKeys)
}

async function tokenizer(pre: string | undefined): Promise<HfTokenizer> {
  const source = await openGgufModel(bytesSource('m.gguf', gpt2Gguf(pre)))
  const t = source.tokenizer
  if (t === undefined) throw new Error('no tokenizer')
  return HfTokenizer.fromJson(JSON.parse(JSON.stringify(t.json)), JSON.parse(JSON.stringify(t.config)))
}

const pieces = (ids: number[]) => ids.map((id) => TOKENS[id])

describe('GGUF byte-level BPE (tokenizer.ggml.model = gpt2)', () => {
  test('llama-bpe: the Llama 3 split, whole-word vocabulary hits before merges', async () => {
    const tok = await tokenizer('llama-bpe')
    expect(tok.bosTokenId).toBe(BOS)
    expect(tok.eosTokenId).toBe(EOS)
    // "the" | " other": "the" is no token, so merges give t + he; "Ġother" is one (ignore_merges)
    expect(pieces(tok.encode('the other'))).toEqual(['t', 'he', 'Ġother'])
    // digits split in groups of three: 123 | 45
    expect(pieces(tok.encode('12345'))).toEqual(['123', '4', '5'])
    expect(tok.encode('<|begin_of_text|>the', { addBos: false })).toEqual([
      BOS,
      TOKENS.indexOf('t'),
      TOKENS.indexOf('he'),
    ])
    expect(tok.encode('', { addBos: true })).toEqual([BOS])
  })

  test('gpt-2: merges only, so " other" is built from its ranked merges', async () => {
    const tok = await tokenizer('gpt-2')
    // he (rank 1), then ot (5), then he r (8); Ġ ot and ot her are no merges
    expect(pieces(tok.encode('the other'))).toEqual(['t', 'he', 'Ġ', 'ot', 'her'])
    expect(pieces(tok.encode(' the'))).toEqual(['Ġthe'])
    // no tokenizer.ggml.pre means GPT-2's split as well
    expect((await tokenizer(undefined)).encode('the other')).toEqual(tok.encode('the other'))
  })

  test('qwen2: the Llama 3 split with single digits, merges always applied', async () => {
    const tok = await tokenizer('qwen2')
    expect(pieces(tok.encode('12345'))).toEqual(['1', '2', '3', '4', '5'])
    // No ignore_merges: " other" is built from ranked merges even though "Ġother" is a token.
    expect(pieces(tok.encode('the other'))).toEqual(['t', 'he', 'Ġ', 'ot', 'her'])
  })

  test.each(['llama-bpe', 'qwen2', 'gpt-2'])(
    '%s: every string round-trips through its bytes',
    async (pre) => {
      const tok = await tokenizer(pre)
      for (const text of ['héllo 中文 😀', '  two  spaces\n\nnew lines\t', 'the other 12345', 'Ω≈ç√ ']) {
        const ids = tok.encode(text)
        expect(tok.decode(ids)).toBe(text)
        expect(tok.decode([BOS, ...ids, EOS])).toBe(text)
      }
      expect(tok.encode('😀')).toEqual([0xf0, 0x9f, 0x98, 0x80])
    },
  )

  test.each([
    [
      'an unknown pre-tokenizer',
      gpt2Gguf('deepseek-llm'),
      /tokenizer\.ggml\.pre "deepseek-llm" is not supported/,
    ],
    ['a merge of three tokens', gpt2Gguf('gpt-2', [], ['a b c']), /merges\[0\] "a b c" is not two tokens/],
    [
      'a missing merges list',
      ggufLlamaFile(
        weights,
        vocab,
        GGML.F32,
        [{ key: 'tokenizer.ggml.model', type: 'string', value: 'gpt2' }],
        ['tokenizer.ggml.model'],
      ),
      /tokenizer\.ggml\.merges is missing/,
    ],
    [
      'an unknown tokenizer model',
      ggufLlamaFile(
        weights,
        vocab,
        GGML.F32,
        [{ key: 'tokenizer.ggml.model', type: 'string', value: 'bert' }],
        ['tokenizer.ggml.model'],
      ),
      /"bert" is not supported \(only "llama" and "gpt2"\)/,
    ],
  ] as const)('%s is refused by name', async (_, bytes, message) => {
    const err = await openGgufModel(bytesSource('m.gguf', bytes)).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).message).toMatch(/^m\.gguf/)
    expect((err as Error).message).toMatch(message)
    expect(err).toBeInstanceOf(TokenizerError)
    expect((err as TokenizerError).code).toBe('ERR_TOKENIZER')
  })
})

describe('GGUF SentencePiece (tokenizer.ggml.model = llama)', () => {
  async function spm(extra: GgufMeta[]): Promise<HfTokenizer> {
    const source = await openGgufModel(bytesSource('m.gguf', ggufLlamaFile(weights, vocab, GGML.F32, extra)))
    const t = source.tokenizer
    if (t === undefined) throw new Error('no tokenizer')
    return HfTokenizer.fromJson(JSON.parse(JSON.stringify(t.json)), JSON.parse(JSON.stringify(t.config)))
  }
  const spelled = (tok: HfTokenizer, text: string) =>
    tok.encode(text).map((id) => (vocab.pieces[id] as string).replaceAll(' ', '▁'))

  test.each([
    ['absent (llama.cpp defaults to true)', [], ['▁hello']],
    ['true', [{ key: 'tokenizer.ggml.add_space_prefix', type: 'bool', value: true }], ['▁hello']],
    // Gemma's converter writes false: no ▁ before the text, so "hello" is not "▁hello".
    ['false', [{ key: 'tokenizer.ggml.add_space_prefix', type: 'bool', value: false }], ['hello']],
  ] as const)('add_space_prefix %s', async (_, extra, expected) => {
    const tok = await spm([...extra])
    expect(spelled(tok, 'hello')).toEqual(expected)
    // The decoder strips exactly the space the normalizer added, so the text comes back.
    expect(tok.decode(tok.encode('hello world'))).toBe('hello world')
    expect(tok.decode(tok.encode(' world'))).toBe(' world')
  })
})
