import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import {
  type ModelConfig,
  ModelConfigError,
  ModelFileError,
  parseModelConfig,
  SAFETENSORS_INDEX_FILE,
  type TensorInfo,
} from '@butterfly/core'
import { ModelNotFoundError, OPTIONAL_CHAT_FILES, openLocalWeights } from '@butterfly/node-platform'

/** The files of a single-file model. A sharded one has the index and its shards instead of the last. */
export const MODEL_FILES = ['config.json', 'tokenizer.json', 'model.safetensors'] as const
export type ModelFileName = (typeof MODEL_FILES)[number]

export interface FileDigest {
  readonly size: number
  readonly sha256: string
}

export interface TensorDigest {
  /** The weights file holding the tensor: model.safetensors, or a shard of a sharded model. */
  readonly file: string
  /** Absolute byte offsets in that file, end exclusive. */
  readonly begin: number
  readonly end: number
  readonly sha256: string
  /** safetensors dtype (an int4 weight's `.qweight` entry is U8, its `.scales` F16). */
  readonly dtype: string
  readonly shape: readonly number[]
}

/** Served as manifest.json: lets a peer range-fetch and verify exactly the tensors it needs. */
export interface ModelManifest {
  readonly modelId: string
  /** 'int4' when config.json marks int4 projections, else the file's float dtypes ('F32', 'F16', 'F32+F16'). */
  readonly weights: string
  /**
   * config.json, tokenizer.json and the weights files (index and shards when sharded), and
   * tokenizer_config.json, chat_template.jinja and generation_config.json when the model has them.
   */
  readonly files: Readonly<Record<string, FileDigest>>
  readonly tensors: Readonly<Record<string, TensorDigest>>
}

export interface ModelIndex {
  readonly dir: string
  readonly config: ModelConfig
  readonly manifest: ModelManifest
  /** Absolute path of each served file, fixed at startup; nothing else is reachable. */
  readonly paths: ReadonlyMap<string, string>
}

export function isModelFileName(name: string): name is ModelFileName {
  return (MODEL_FILES as readonly string[]).includes(name)
}

/**
 * Validates a model directory (single model.safetensors, or model.safetensors.index.json and
 * its shards) and hashes its files once. Each weights file is read in one streaming pass that
 * feeds the whole-file hash and the hash of every tensor in it, so a multi-GB model never sits
 * in memory and is read only once.
 */
export async function indexModelDir(dir: string, modelId = basename(dir)): Promise<ModelIndex> {
  for (const f of ['config.json', 'tokenizer.json']) {
    const s = await stat(join(dir, f)).catch(() => undefined)
    if (s === undefined || !s.isFile()) throw new ModelNotFoundError(`${join(dir, f)} does not exist`)
  }
  const configPath = join(dir, 'config.json')
  let json: unknown
  try {
    json = JSON.parse(await readFile(configPath, 'utf8'))
  } catch (err) {
    throw new ModelConfigError(`${configPath} is not valid JSON: ${(err as Error).message}`)
  }
  const config = parseModelConfig(json, configPath)

  const files: Record<string, FileDigest> = {
    'config.json': await hashFile(configPath),
    'tokenizer.json': await hashFile(join(dir, 'tokenizer.json')),
  }
  // Served when present, so a model downloaded from this server (a directory URL) keeps its
  // special tokens, chat template and stop ids; workers need none of them.
  for (const f of ['tokenizer_config.json', ...OPTIONAL_CHAT_FILES]) {
    if ((await stat(join(dir, f)).catch(() => undefined))?.isFile() === true)
      files[f] = await hashFile(join(dir, f))
  }
  // A Map, not an object literal, so a tensor named "__proto__" is just a name.
  const tensorDigests = new Map<string, TensorDigest>()
  const dtypes = new Set<string>()
  const weights = await openLocalWeights(dir)
  try {
    if (weights.index !== undefined) {
      files[SAFETENSORS_INDEX_FILE] = await hashFile(join(dir, SAFETENSORS_INDEX_FILE))
    }
    for (const file of weights.files) {
      const reader = await weights.reader(file)
      // A sharded model serves the tensors its index names, each from the shard it names.
      const tensors = [...reader.tensors.values()].filter(
        (t) => weights.index === undefined || weights.index.weightMap.get(t.name) === file,
      )
      const tensorHashes = new Map(tensors.map((t) => [t.name, createHash('sha256')] as const))
      // Non-empty tensors are disjoint, so sorted by begin their ends are sorted too; empty ones
      // (which may sit inside another's range) need no bytes and would break that order.
      const withData = tensors.filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin)
      const dataHashes = withData.map((t) => tensorHashes.get(t.name) as Hash)
      files[file] = await hashFile(join(dir, file), (chunk, pos) =>
        feedTensors(withData, dataHashes, chunk, pos),
      )
      for (const t of tensors) {
        const sha256 = (tensorHashes.get(t.name) as Hash).digest('hex')
        tensorDigests.set(t.name, {
          file,
          begin: t.begin,
          end: t.end,
          sha256,
          dtype: t.dtype,
          shape: t.shape,
        })
        dtypes.add(t.dtype)
      }
    }
  } finally {
    await weights.close()
  }
  const paths = new Map(Object.keys(files).map((f) => [f, join(dir, f)] as const))
  const weightsKind =
    config.quantization !== undefined ? config.quantization.method : [...dtypes].sort().join('+')
  return {
    dir,
    config,
    paths,
    manifest: { modelId, weights: weightsKind, files, tensors: Object.fromEntries(tensorDigests) },
  }
}

async function hashFile(
  path: string,
  onChunk?: (chunk: Buffer, position: number) => void,
): Promise<FileDigest> {
  const expected = (await stat(path)).size
  const hash = createHash('sha256')
  let size = 0
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    const buf = chunk as Buffer
    hash.update(buf)
    onChunk?.(buf, size)
    size += buf.byteLength
  }
  // The file changed under us; hashes of a moving target would be served as if they were true.
  if (size !== expected) {
    throw new ModelFileError(
      'ERR_MODEL_FILE_READ',
      path,
      `size changed while hashing (${expected} → ${size})`,
    )
  }
  return { size, sha256: hash.digest('hex') }
}

/** Feeds the part of `chunk` (at absolute `pos`) that each tensor covers into its hash. */
function feedTensors(
  tensors: readonly TensorInfo[],
  hashes: readonly Hash[],
  chunk: Buffer,
  pos: number,
): void {
  const chunkEnd = pos + chunk.byteLength
  // Sorted and disjoint, so a binary search finds the first tensor that can overlap the chunk.
  let lo = 0
  let hi = tensors.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((tensors[mid] as TensorInfo).end <= pos) lo = mid + 1
    else hi = mid
  }
  for (let i = lo; i < tensors.length; i++) {
    const t = tensors[i] as TensorInfo
    if (t.begin >= chunkEnd) break
    const s = Math.max(t.begin, pos)
    const e = Math.min(t.end, chunkEnd)
    if (e > s) hashes[i]?.update(chunk.subarray(s - pos, e - pos))
  }
}
