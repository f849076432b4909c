import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  byteTokenizerJson,
  type ChatTemplate,
  expectedWeightShapes,
  fingerprinted,
  fromFloat32,
  type ModelConfig,
  ModelConfigError,
  modelConfigToJson,
  parseModelConfig,
  type RawTensor,
  storedTensorDtypes,
  syntheticConfig,
  syntheticTensor,
  type Tokenizer,
  toFloat32,
  type WeightProvider,
  withInt4Quantization,
} from '@butterfly/core'
import { ModelNotFoundError } from '../errors.js'
import { type DownloadModelOptions, downloadModel } from '../hub/download-model.js'
import { isRemoteSpec, parseRemoteSpec } from '../hub/model-spec.js'
import { exists } from './exists.js'
import { localWeightsFingerprint, openLocalWeights } from './local-weights.js'
import { type ModelDtype, writeWeightsFile } from './model-convert.js'
import { SYNTHETIC_TOKENIZER_PACKAGES, writeRealTokenizer } from './synthetic-tokenizers.js'
import { loadTokenizerFiles } from './tokenizer-files.js'

export interface LoadedModel {
  readonly dir: string
  readonly config: ModelConfig
  readonly tokenizer: Tokenizer
  /** The model's chat template (chat_template.jinja or tokenizer_config.json), if it has one. */
  readonly chatTemplate: ChatTemplate | undefined
  /** generation_config.json's eos_token_id ([] without the file). */
  readonly generationEosIds: readonly number[]
  /** Range-reads one tensor, checked against the shape the graph expects. */
  readonly weights: WeightProvider
  close(): Promise<void>
}

export const WEIGHTS_FILE = 'model.safetensors'

/**
 * The model committed at models/shakespeare (trained by @butterfly/trainer): the default of
 * `npm start` and butterfly-server. Three levels up from src/ or dist/ is the repository root.
 */
export const EMBEDDED_MODEL_DIR = fileURLToPath(new URL('../../../../models/shakespeare', import.meta.url))

/** Where synthetic models are materialised: $BUTTERFLY_CACHE_DIR or ~/.cache/butterfly. */
export function cacheDir(): string {
  return process.env.BUTTERFLY_CACHE_DIR ?? join(homedir(), '.cache', 'butterfly')
}

/** Weight formats of `synthetic:NAME[:DTYPE]`. */
const SYNTHETIC_DTYPES = { fp32: 'F32', fp16: 'F16', int4: 'int4' } as const

/**
 * Resolves `--model`: a directory; `synthetic:NAME[:fp16|:int4]`, which is written once into
 * the cache as an ordinary model directory (`:int4` stores the linear projections as int4,
 * block 32, and every other tensor as fp16); or `hf:ORG/REPO[@REV]` / an `https://…/`
 * directory URL, downloaded into the cache (resumable, checksummed; see downloadModel). Each is
 * then loaded like any other directory.
 */
export async function resolveModelDir(
  spec: string,
  cache = cacheDir(),
  download: DownloadModelOptions = {},
): Promise<string> {
  if (isRemoteSpec(spec)) return downloadModel(parseRemoteSpec(spec), cache, download)
  if (!spec.startsWith('synthetic:')) return resolve(spec)
  const [name = '', dtype = 'fp32', ...rest] = spec.slice('synthetic:'.length).split(':')
  if (rest.length > 0 || !Object.hasOwn(SYNTHETIC_DTYPES, dtype)) {
    throw new ModelConfigError(
      `bad model spec "${spec}": expected synthetic:NAME, synthetic:NAME:fp16 or synthetic:NAME:int4`,
    )
  }
  const format = SYNTHETIC_DTYPES[dtype as keyof typeof SYNTHETIC_DTYPES]
  const base = syntheticConfig(name)
  const config = format === 'int4' ? withInt4Quantization(base) : base
  const tokenizerPackage = Object.hasOwn(SYNTHETIC_TOKENIZER_PACKAGES, name)
    ? SYNTHETIC_TOKENIZER_PACKAGES[name]
    : undefined
  // The key covers the preset's shape (and its real tokenizer, if any), so a changed preset
  // never reuses stale files; presets without one keep the key they always had.
  const keyed = tokenizerPackage === undefined ? config : { config, tokenizerPackage }
  const key = createHash('sha256').update(JSON.stringify(keyed)).digest('hex').slice(0, 12)
  const dir = join(cache, 'synthetic', `${name}-${dtype}-${key}`)
  if (await exists(join(dir, WEIGHTS_FILE))) return dir
  await writeSyntheticModel(config, dir, format, tokenizerPackage === undefined ? {} : { tokenizerPackage })
  return dir
}

/**
 * Writes config.json, tokenizer.json and model.safetensors atomically (temp dir + rename).
 * 'int4' marks the config as int4 (unless it already is) and stores the tensors isInt4Weight
 * selects as int4, the rest as F16. The tokenizer is the byte tokenizer, or with
 * `tokenizerPackage` that package's real tokenizer.json and tokenizer_config.json (see
 * SYNTHETIC_TOKENIZER_PACKAGES); its vocabulary must fit the config's.
 */
export async function writeSyntheticModel(
  model: ModelConfig,
  dir: string,
  dtype: ModelDtype,
  options: { readonly tokenizerPackage?: string } = {},
): Promise<void> {
  const config = dtype === 'int4' && model.quantization === undefined ? withInt4Quantization(model) : model
  const tmp = `${dir}.tmp-${randomBytes(4).toString('hex')}`
  await mkdir(tmp, { recursive: true })
  try {
    await writeFile(join(tmp, 'config.json'), `${JSON.stringify(modelConfigToJson(config), null, 2)}\n`)
    if (options.tokenizerPackage === undefined) {
      await writeFile(join(tmp, 'tokenizer.json'), JSON.stringify(byteTokenizerJson(config.vocabSize)))
    } else {
      await writeRealTokenizer(tmp, options.tokenizerPackage)
      const { tokenizer } = await loadTokenizerFiles(tmp)
      if (tokenizer.vocabSize > config.vocabSize) {
        throw new ModelConfigError(
          `${options.tokenizerPackage} has ${tokenizer.vocabSize} tokens; the model's vocabulary is ${config.vocabSize}`,
        )
      }
    }
    await writeWeightsFile(join(tmp, WEIGHTS_FILE), config, dtype, (name) => syntheticTensor(config, name))
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
  const { tokenizer, chatTemplate, generationEosIds } = await loadTokenizerFiles(dir)
  const fingerprint = await localWeightsFingerprint(dir)
  const shards = await openLocalWeights(dir)
  try {
    // A sharded checkpoint whose index forgets a tensor fails now, naming the index.
    if (shards.index !== undefined)
      for (const name of expectedWeightShapes(config).keys()) shards.fileOf(name)
  } catch (err) {
    await shards.close()
    throw err
  }
  const weights: WeightProvider = fingerprinted(
    async (name, shape) =>
      // storedTensorDtypes also admits an int4 weight's U8 levels and F16/F32 scales.
      toGraphDtype(await shards.read(name, { dtype: storedTensorDtypes(name), shape })),
    fingerprint,
  )
  return { dir, config, tokenizer, chatTemplate, generationEosIds, weights, close: () => shards.close() }
}

/** The graph takes F32 or F16 (and U8 int4 levels); BF16 checkpoints are widened to F32 on load. */
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
