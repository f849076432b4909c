import { readFile, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import {
  CHAT_TEMPLATE_LIMITS,
  ChatTemplateError,
  type GgufFile,
  hfImportSource,
  type ImportSource,
  type ImportTokenizer,
  llama2cTokenizerJson,
  locateTensors,
  ModelConfigError,
  ModelFileError,
  openGgufModel,
  openLlama2cCheckpoint,
  parseModelConfig,
  parseSafetensorsIndex,
  readGguf,
  SAFETENSORS_INDEX_FILE as SAFETENSORS_INDEX,
  type SafetensorsIndex,
  SafetensorsReader,
  TokenizerError,
} from '@butterfly/core'
import {
  CliUsageError,
  FileSource,
  ModelNotFoundError,
  OPTIONAL_CHAT_FILES,
  readCapped,
  WEIGHTS_FILE,
} from '@butterfly/node-platform'

/** Real config.json and index files are kilobytes; tokenizer.json files reach tens of MB. */
const MAX_CONFIG_BYTES = 64 << 20
const MAX_TOKENIZER_BYTES = 256 << 20

export interface OpenedSource {
  readonly source: ImportSource
  readonly tokenizer: ImportTokenizer
  /**
   * chat_template.jinja and generation_config.json, by name, when the source has them (a
   * Hugging Face directory, or the directory of --tokenizer's tokenizer.json), size-capped.
   */
  readonly chatFiles: ReadonlyMap<string, string>
  close(): Promise<void>
}

/**
 * Opens what `butterfly-worker import` was given: a directory is a Hugging Face checkpoint, a
 * file starting with "GGUF" (or named *.gguf) is GGUF, any other file a llama2.c checkpoint.
 * `tokenizerPath` (tokenizer.bin or tokenizer.json) overrides the source's own tokenizer and is
 * required for llama2.c, whose model.bin carries none.
 */
export async function openImportSource(path: string, tokenizerPath?: string): Promise<OpenedSource> {
  const info = await stat(path).catch(() => undefined)
  if (info === undefined) throw new ModelNotFoundError(`${path} does not exist`)
  const sources: FileSource[] = []
  const openFile = async (p: string) => {
    const s = await FileSource.open(p)
    sources.push(s)
    return s
  }
  const close = async () => {
    await Promise.all(sources.map((s) => s.close()))
  }
  try {
    let source: ImportSource
    let ggufTemplate: string | undefined
    if (info.isDirectory()) {
      source = await openHfDirectory(path, openFile, tokenizerPath === undefined)
    } else {
      const file = await openFile(path)
      const magic = new TextDecoder().decode(await file.read(0, 4))
      if (magic === 'GGUF' || path.toLowerCase().endsWith('.gguf')) {
        source = await openGgufModel(file)
        ggufTemplate = ggufChatTemplate(await readGguf(file), path)
      } else {
        if (tokenizerPath === undefined) {
          throw new CliUsageError(
            'a llama2.c checkpoint needs --tokenizer (its tokenizer.bin, or a tokenizer.json)',
          )
        }
        source = await openLlama2cCheckpoint(file)
      }
    }
    const tokenizer =
      tokenizerPath === undefined ? source.tokenizer : await readTokenizer(tokenizerPath, source, openFile)
    if (tokenizer === undefined) throw new TokenizerError(`${path} carries no tokenizer; pass --tokenizer`)
    const chatFiles = new Map<string, string>()
    // The template travels with the tokenizer; the stop ids with the model.
    const dirs = {
      'chat_template.jinja': tokenizerPath?.toLowerCase().endsWith('.json') ? dirname(tokenizerPath) : path,
      'generation_config.json': path,
    }
    if (ggufTemplate !== undefined && tokenizerPath === undefined)
      chatFiles.set('chat_template.jinja', ggufTemplate)
    for (const name of OPTIONAL_CHAT_FILES) {
      const dir = dirs[name]
      if (dir !== path || info.isDirectory()) {
        const text = await readCapped(dir, name)
        if (text !== undefined) chatFiles.set(name, text)
      }
    }
    return { source, tokenizer, chatFiles, close }
  } catch (err) {
    await close()
    throw err
  }
}

/** GGUF carries the chat template as `tokenizer.chat_template` metadata (llama.cpp's convention). */
function ggufChatTemplate(gguf: GgufFile, path: string): string | undefined {
  const template = gguf.metadata.get('tokenizer.chat_template')
  if (template === undefined) return undefined
  if (typeof template !== 'string')
    throw new ChatTemplateError(`${path}: tokenizer.chat_template is not a string`)
  if (template.length > CHAT_TEMPLATE_LIMITS.sourceChars) {
    throw new ChatTemplateError(
      `${path}: tokenizer.chat_template is ${template.length} characters; at most ${CHAT_TEMPLATE_LIMITS.sourceChars} are accepted`,
    )
  }
  return template
}

async function openHfDirectory(
  dir: string,
  openFile: (path: string) => Promise<FileSource>,
  withTokenizer: boolean,
): Promise<ImportSource> {
  const configPath = join(dir, 'config.json')
  const config = parseModelConfig(await readJson(configPath, MAX_CONFIG_BYTES, 'config'), configPath)
  const readers = new Map<string, SafetensorsReader>()
  let index: SafetensorsIndex | undefined
  if (await isFile(join(dir, WEIGHTS_FILE))) {
    readers.set(WEIGHTS_FILE, await SafetensorsReader.open(await openFile(join(dir, WEIGHTS_FILE))))
  } else if (await isFile(join(dir, SAFETENSORS_INDEX))) {
    const indexPath = join(dir, SAFETENSORS_INDEX)
    index = parseSafetensorsIndex(await readJson(indexPath, MAX_CONFIG_BYTES, 'index'), indexPath)
    for (const shard of index.shards) {
      const shardPath = join(dir, shard)
      if (!(await isFile(shardPath)))
        throw new ModelNotFoundError(`${shardPath}, named in ${indexPath}, does not exist`)
      readers.set(shard, await SafetensorsReader.open(await openFile(shardPath)))
    }
  } else {
    throw new ModelNotFoundError(
      `${dir} has neither ${WEIGHTS_FILE} nor ${SAFETENSORS_INDEX} (PyTorch .bin checkpoints are not supported)`,
    )
  }
  const located = locateTensors(config, readers, index)
  if (!withTokenizer) return hfImportSource(config, located)
  const tokenizerPath = join(dir, 'tokenizer.json')
  if (!(await isFile(tokenizerPath))) {
    const hint = (await isFile(join(dir, 'tokenizer.model')))
      ? ' (tokenizer.model alone is not supported)'
      : ''
    throw new TokenizerError(`${tokenizerPath} does not exist${hint}; pass --tokenizer tokenizer.json`)
  }
  const tokenizerConfigPath = join(dir, 'tokenizer_config.json')
  const tokenizer: ImportTokenizer = (await isFile(tokenizerConfigPath))
    ? {
        json: await readJson(tokenizerPath, MAX_TOKENIZER_BYTES, 'tokenizer'),
        config: await readJson(tokenizerConfigPath, MAX_CONFIG_BYTES, 'tokenizer'),
      }
    : { json: await readJson(tokenizerPath, MAX_TOKENIZER_BYTES, 'tokenizer') }
  return hfImportSource(config, located, tokenizer)
}

/** --tokenizer: a tokenizer.json (with its tokenizer_config.json beside it, if any) or a tokenizer.bin. */
async function readTokenizer(
  path: string,
  source: ImportSource,
  openFile: (path: string) => Promise<FileSource>,
): Promise<ImportTokenizer> {
  if (!(await isFile(path))) throw new ModelNotFoundError(`--tokenizer ${path} does not exist`)
  if (!path.toLowerCase().endsWith('.json'))
    return llama2cTokenizerJson(await openFile(path), source.config.vocabSize)
  const json = await readJson(path, MAX_TOKENIZER_BYTES, 'tokenizer')
  const configPath = join(dirname(path), 'tokenizer_config.json')
  if (!(await isFile(configPath))) return { json }
  return { json, config: await readJson(configPath, MAX_CONFIG_BYTES, 'tokenizer') }
}

async function readJson(
  path: string,
  maxBytes: number,
  kind: 'config' | 'index' | 'tokenizer',
): Promise<Record<string, unknown>> {
  const fail = (msg: string) =>
    kind === 'tokenizer'
      ? new TokenizerError(`${path}: ${msg}`)
      : kind === 'config'
        ? new ModelConfigError(`${path}: ${msg}`)
        : new ModelFileError('ERR_MODEL_FILE_HEADER', path, msg)
  const info = await stat(path).catch(() => undefined)
  if (info === undefined) throw new ModelNotFoundError(`${path} does not exist`)
  if (info.size > maxBytes) throw fail(`is ${info.size} bytes, more than the cap of ${maxBytes}`)
  let value: unknown
  try {
    value = JSON.parse(await readFile(path, 'utf8'))
  } catch (err) {
    throw fail(`is not valid JSON: ${(err as Error).message}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw fail('is not a JSON object')
  return value as Record<string, unknown>
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() === true
}
