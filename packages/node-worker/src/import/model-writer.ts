import { randomBytes } from 'node:crypto'
import { type FileHandle, mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import {
  HfTokenizer,
  type ImportSource,
  type ImportTokenizer,
  ModelFileError,
  modelConfigToJson,
  safetensorsLayout,
  TokenizerError,
} from '@butterfly/core'
import { exists, loadModel, OPTIONAL_CHAT_FILES, WEIGHTS_FILE } from '@butterfly/node-platform'
import { ImportError } from '../errors.js'
import {
  checkOutputDtype,
  encodeOutput,
  type ImportDtype,
  outputConfig,
  outputEntries,
} from './output-dtype.js'

export interface WriteOptions {
  readonly dtype: ImportDtype
  /** Replace `outDir` if it is empty or holds a model directory (config.json). */
  readonly force?: boolean
  /** Called after each tensor with source bytes done and in total, and the tensor's name. */
  readonly onProgress?: (done: number, total: number, tensor: string) => void
  readonly signal?: AbortSignal
  /** Further files written as they are (chat_template.jinja, generation_config.json); loadModel validates them. */
  readonly extraFiles?: ReadonlyMap<string, string>
}

export interface WriteResult {
  readonly dir: string
  readonly tensors: number
  readonly bytes: number
}

/**
 * Writes `source` as an ordinary Butterfly model directory: config.json, tokenizer.json (and
 * tokenizer_config.json, chat_template.jinja, generation_config.json when there are) and
 * model.safetensors. It streams one tensor at a
 * time, writes into a temporary sibling directory, checks that the result loads, and only then
 * renames it into place, so `outDir` never holds half a model.
 */
export async function writeImportedModel(
  source: ImportSource,
  tokenizer: ImportTokenizer,
  outDir: string,
  options: WriteOptions,
): Promise<WriteResult> {
  checkOutputDtype(options.dtype)
  checkTokenizer(source, tokenizer)
  const dir = resolve(outDir)
  await checkOutDir(dir, options.force === true)
  await mkdir(dirname(dir), { recursive: true })
  const tmp = join(dirname(dir), `.${basename(dir)}.tmp-${randomBytes(4).toString('hex')}`)
  await mkdir(tmp)
  try {
    const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`
    await writeFile(
      join(tmp, 'config.json'),
      json(modelConfigToJson(outputConfig(source.config, options.dtype))),
    )
    await writeFile(join(tmp, 'tokenizer.json'), JSON.stringify(tokenizer.json))
    if (tokenizer.config !== undefined)
      await writeFile(join(tmp, 'tokenizer_config.json'), json(tokenizer.config))
    for (const [name, text] of options.extraFiles ?? []) {
      // Only the known names: a name is a path inside the output directory.
      if (!(OPTIONAL_CHAT_FILES as readonly string[]).includes(name))
        throw new TypeError(`unexpected model file ${name}`)
      await writeFile(join(tmp, name), text)
    }
    const bytes = await writeWeights(source, join(tmp, WEIGHTS_FILE), options)
    // The same checks `generate` and `join` run: config, tokenizer, safetensors header.
    await (await loadModel(tmp)).close()
    if (await exists(dir)) await rm(dir, { recursive: true, force: true })
    await rename(tmp, dir)
    return { dir, tensors: source.tensors.length, bytes }
  } catch (err) {
    await rm(tmp, { recursive: true, force: true })
    throw err
  }
}

async function writeWeights(source: ImportSource, path: string, options: WriteOptions): Promise<number> {
  const config = outputConfig(source.config, options.dtype)
  const entries = source.tensors.flatMap((t) => outputEntries(config, t.name, t.shape, options.dtype))
  const layout = safetensorsLayout(entries)
  const total = source.tensors.reduce((a, t) => a + t.sourceBytes, 0)
  let done = 0
  const file = await open(path, 'w')
  try {
    await writeAll(file, layout.header)
    let next = 0
    for (const tensor of source.tensors) {
      options.signal?.throwIfAborted()
      const raw = await tensor.read(options.signal)
      for (const data of encodeOutput(config, tensor.name, raw, options.dtype)) {
        const entry = entries[next++]
        const range = entry === undefined ? undefined : layout.offsets.get(entry.name)
        if (range === undefined || range.end - range.begin !== data.byteLength) {
          throw new ModelFileError('ERR_MODEL_FILE_SHAPE', path, 'encoded size does not match the layout', {
            tensor: tensor.name,
          })
        }
        await writeAll(file, data)
      }
      done += tensor.sourceBytes
      options.onProgress?.(done, total, tensor.name)
    }
  } finally {
    await file.close()
  }
  return layout.totalBytes
}

/** The tokenizer must load and fit the model's embedding. */
function checkTokenizer(source: ImportSource, tokenizer: ImportTokenizer): void {
  const tok = HfTokenizer.fromJson(tokenizer.json, tokenizer.config)
  if (tok.vocabSize > source.config.vocabSize) {
    throw new TokenizerError(
      `the tokenizer has ${tok.vocabSize} tokens but the model's embedding only ${source.config.vocabSize}`,
    )
  }
}

async function checkOutDir(dir: string, force: boolean): Promise<void> {
  let entries: string[]
  try {
    const s = await stat(dir)
    if (!s.isDirectory())
      throw new ImportError('ERR_IMPORT_OUTPUT', `--out ${dir} exists and is not a directory`)
    entries = await readdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  if (entries.length === 0) return
  if (!force) {
    throw new ImportError('ERR_IMPORT_OUTPUT', `--out ${dir} already exists; pass --force to replace it`)
  }
  // --force replaces models, never an arbitrary directory someone mistyped.
  if (!entries.includes('config.json')) {
    throw new ImportError(
      'ERR_IMPORT_OUTPUT',
      `--out ${dir} is not empty and holds no model (config.json); not replacing it`,
    )
  }
}

/** A single write(2) moves at most ~2 GiB on Linux; loop until every byte is out. */
async function writeAll(file: FileHandle, data: Uint8Array): Promise<void> {
  for (let at = 0; at < data.byteLength; ) {
    const { bytesWritten } = await file.write(data, at, Math.min(data.byteLength - at, 1 << 30))
    at += bytesWritten
  }
}
