import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  byteTokenizerJson,
  fromFloat32,
  HfTokenizer,
  type ModelConfig,
  ModelConfigError,
  modelConfigToJson,
  parseModelConfig,
  type RawTensor,
  SafetensorsReader,
  safetensorsLayout,
  syntheticConfig,
  syntheticTensor,
  syntheticTensorSpecs,
  type Tokenizer,
  TokenizerError,
  toFloat32,
  type WeightProvider,
} from '@butterfly/core'
import { ModelNotFoundError } from './errors.js'
import { FileSource } from './file-source.js'

export interface LoadedModel {
  readonly dir: string
  readonly config: ModelConfig
  readonly tokenizer: Tokenizer
  /** Range-reads one tensor, checked against the shape the graph expects. */
  readonly weights: WeightProvider
  close(): Promise<void>
}

export const WEIGHTS_FILE = 'model.safetensors'

/**
 * The model committed at models/shakespeare (trained by @butterfly/trainer): the default of
 * `npm start` and butterfly-server. Three levels up from src/ or dist/ is the repository root.
 */
export const EMBEDDED_MODEL_DIR = fileURLToPath(new URL('../../../models/shakespeare', import.meta.url))

/** Where synthetic models are materialised: $BUTTERFLY_CACHE_DIR or ~/.cache/butterfly. */
export function cacheDir(): string {
  return process.env.BUTTERFLY_CACHE_DIR ?? join(homedir(), '.cache', 'butterfly')
}

/**
 * Resolves `--model`: a directory, or `synthetic:NAME[:fp16]`, which is written once into
 * the cache as an ordinary model directory and then loaded like any other.
 */
export async function resolveModelDir(spec: string, cache = cacheDir()): Promise<string> {
  if (!spec.startsWith('synthetic:')) return resolve(spec)
  const [name = '', dtype = 'fp32', ...rest] = spec.slice('synthetic:'.length).split(':')
  if (rest.length > 0 || (dtype !== 'fp32' && dtype !== 'fp16')) {
    throw new ModelConfigError(`bad model spec "${spec}": expected synthetic:NAME or synthetic:NAME:fp16`)
  }
  const config = syntheticConfig(name)
  // The key covers the preset's shape, so a changed preset never reuses stale weights.
  const key = createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 12)
  const dir = join(cache, 'synthetic', `${name}-${dtype}-${key}`)
  if (await exists(join(dir, WEIGHTS_FILE))) return dir
  await writeSyntheticModel(config, dir, dtype === 'fp16' ? 'F16' : 'F32')
  return dir
}

/** Writes config.json, tokenizer.json and model.safetensors atomically (temp dir + rename). */
export async function writeSyntheticModel(
  config: ModelConfig,
  dir: string,
  dtype: 'F32' | 'F16',
): Promise<void> {
  const tmp = `${dir}.tmp-${randomBytes(4).toString('hex')}`
  await mkdir(tmp, { recursive: true })
  try {
    await writeFile(join(tmp, 'config.json'), `${JSON.stringify(modelConfigToJson(config), null, 2)}\n`)
    await writeFile(join(tmp, 'tokenizer.json'), JSON.stringify(byteTokenizerJson(config.vocabSize)))
    const specs = syntheticTensorSpecs(config)
    const layout = safetensorsLayout(specs.map((s) => ({ name: s.name, dtype, shape: s.shape })))
    const file = await open(join(tmp, WEIGHTS_FILE), 'w')
    try {
      await file.write(layout.header)
      // One tensor at a time, so a multi-GB model never sits in memory whole.
      for (const s of specs) await file.write(fromFloat32(syntheticTensor(config, s.name), dtype))
    } finally {
      await file.close()
    }
    await rm(dir, { recursive: true, force: true })
    await rename(tmp, dir)
  } catch (err) {
    await rm(tmp, { recursive: true, force: true })
    throw err
  }
}

/** Opens a model directory: validates config.json and the weights header, loads the tokenizer. */
export async function loadModel(spec: string): Promise<LoadedModel> {
  const dir = await resolveModelDir(spec)
  if (!(await exists(dir))) throw new ModelNotFoundError(`model directory ${dir} does not exist`)
  const configPath = join(dir, 'config.json')
  const config = parseModelConfig(await readJson(configPath, (m) => new ModelConfigError(m)), configPath)
  const tokenizerPath = join(dir, 'tokenizer.json')
  const tokenizerConfigPath = join(dir, 'tokenizer_config.json')
  const tokenizerConfig = (await exists(tokenizerConfigPath))
    ? await readJson(tokenizerConfigPath, (m) => new TokenizerError(m))
    : undefined
  const tokenizer = HfTokenizer.fromJson(
    await readJson(tokenizerPath, (m) => new TokenizerError(m)),
    tokenizerConfig,
  )
  const weightsPath = join(dir, WEIGHTS_FILE)
  if (!(await exists(weightsPath))) throw new ModelNotFoundError(`${weightsPath} does not exist`)
  const source = await FileSource.open(weightsPath)
  try {
    const reader = await SafetensorsReader.open(source)
    const weights: WeightProvider = async (name, shape) =>
      toGraphDtype(await reader.read(name, { dtype: ['F32', 'F16', 'BF16'], shape }))
    return { dir, config, tokenizer, weights, close: () => source.close() }
  } catch (err) {
    await source.close()
    throw err
  }
}

/** The graph takes F32 or F16; BF16 checkpoints are widened to F32 on load. */
function toGraphDtype(t: RawTensor): RawTensor {
  if (t.dtype !== 'BF16') return t
  return { dtype: 'F32', shape: t.shape, data: fromFloat32(toFloat32(t), 'F32') }
}

async function readJson(path: string, fail: (message: string) => Error): Promise<unknown> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    throw new ModelNotFoundError(`${path} does not exist or cannot be read`)
  }
  try {
    return JSON.parse(text)
  } catch (err) {
    throw fail(`${path} is not valid JSON: ${(err as Error).message}`)
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}
