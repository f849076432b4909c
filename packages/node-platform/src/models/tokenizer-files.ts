import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import {
  CHAT_TEMPLATE_LIMITS,
  ChatTemplate,
  ChatTemplateError,
  generationConfigEosIds,
  HfTokenizer,
  TokenizerError,
} from '@butterfly/core'
import { ModelNotFoundError } from '../errors.js'

/**
 * The files of a model directory that shape text rather than numbers, with the largest size
 * each may have (real ones: Gemma 3's tokenizer.json is 33 MB, its tokenizer_config.json 1.1 MB,
 * a chat_template.jinja a few KB, a generation_config.json a few hundred bytes). The hub
 * download and the importer carry the same list (tokenizer.json is required; the rest optional).
 */
export const TOKENIZER_FILES = {
  'tokenizer.json': 64 * 2 ** 20,
  'tokenizer_config.json': 8 * 2 ** 20,
  'chat_template.jinja': CHAT_TEMPLATE_LIMITS.sourceChars * 4,
  'generation_config.json': 64 * 1024,
} as const
export type TokenizerFileName = keyof typeof TOKENIZER_FILES
/** The files a download or an import carries when the source has them. */
export const OPTIONAL_CHAT_FILES = ['chat_template.jinja', 'generation_config.json'] as const

/** What the gateway and the CLI need to turn chats into ids and know where a reply ends. */
export interface TokenizerFiles {
  readonly tokenizer: HfTokenizer
  /** Undefined when the model has no template (the caller applies its documented fallback). */
  readonly chatTemplate: ChatTemplate | undefined
  /** generation_config.json's eos_token_id ([] without the file). */
  readonly generationEosIds: readonly number[]
}

/**
 * Reads tokenizer.json (required), tokenizer_config.json, chat_template.jinja and
 * generation_config.json (each optional) from a model directory, each within its size cap.
 */
export async function loadTokenizerFiles(dir: string): Promise<TokenizerFiles> {
  const tokenizerJson = await readCapped(dir, 'tokenizer.json')
  if (tokenizerJson === undefined)
    throw new ModelNotFoundError(`${join(dir, 'tokenizer.json')} does not exist`)
  const tokenizerConfig = await readCapped(dir, 'tokenizer_config.json')
  const config =
    tokenizerConfig === undefined ? undefined : parseJson(dir, 'tokenizer_config.json', tokenizerConfig)
  const tokenizer = HfTokenizer.fromJson(parseJson(dir, 'tokenizer.json', tokenizerJson), config)
  const jinja = await readCapped(dir, 'chat_template.jinja')
  const generation = await readCapped(dir, 'generation_config.json')
  const where = join(dir, 'generation_config.json')
  return {
    tokenizer,
    chatTemplate: ChatTemplate.fromTokenizerConfig(config, jinja),
    generationEosIds:
      generation === undefined
        ? []
        : generationConfigEosIds(parseJson(dir, 'generation_config.json', generation), where),
  }
}

/** The file's text, or undefined when it does not exist; refuses one over its cap. */
export async function readCapped(dir: string, name: TokenizerFileName): Promise<string | undefined> {
  const path = join(dir, name)
  const size = await stat(path).then(
    (s) => (s.isFile() ? s.size : -1),
    () => undefined,
  )
  if (size === undefined) return undefined
  if (size < 0) throw new ModelNotFoundError(`${path} is not a file`)
  if (size > TOKENIZER_FILES[name]) {
    const fail =
      name === 'chat_template.jinja' || name === 'generation_config.json' ? ChatTemplateError : TokenizerError
    throw new fail(`${path} is ${size} bytes; at most ${TOKENIZER_FILES[name]} are accepted`)
  }
  return readFile(path, 'utf8')
}

function parseJson(dir: string, name: TokenizerFileName, text: string): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    const fail = name === 'generation_config.json' ? ChatTemplateError : TokenizerError
    throw new fail(`${join(dir, name)} is not valid JSON: ${(err as Error).message}`)
  }
}
