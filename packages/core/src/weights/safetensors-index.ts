import { ModelFileError } from '../errors.js'

/** The single-file weights name, and the index Hugging Face writes for sharded checkpoints. */
export const SAFETENSORS_FILE = 'model.safetensors'
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json'

/** Indexes of the largest public checkpoints are a few MB; anything near this is not an index. */
export const MAX_INDEX_BYTES = 32 * 2 ** 20
const MAX_TENSORS = 1_000_000

/** `model.safetensors.index.json`: which shard file holds each tensor. */
export interface SafetensorsIndex {
  /** Tensor name → shard file name (a plain file name in the model directory). */
  readonly weightMap: ReadonlyMap<string, string>
  /** The distinct shard names, in the order they first appear. */
  readonly shards: readonly string[]
}

// One path component: no separators, no "..", nothing a file system or URL would reinterpret.
const SHARD_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}\.safetensors$/

/**
 * Whether `name` may be a weights file: a plain file name ending in `.safetensors`. Names
 * come from downloaded indexes and manifests, so one like `../x.safetensors` or `a/b` must
 * never become a path.
 */
export function isShardName(name: unknown): name is string {
  return typeof name === 'string' && SHARD_NAME.test(name) && !name.includes('..')
}

/** Parses index bytes after checking the size cap, so a huge body is never decoded. */
export function parseSafetensorsIndexBytes(bytes: Uint8Array, file: string): SafetensorsIndex {
  if (bytes.byteLength > MAX_INDEX_BYTES) {
    throw indexError(file, `is ${bytes.byteLength} bytes, over the cap of ${MAX_INDEX_BYTES}`)
  }
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw indexError(file, `is not UTF-8 JSON: ${(err as Error).message}`)
  }
  return parseSafetensorsIndex(json, file)
}

/**
 * Validates an index: `weight_map` must be a non-empty object mapping tensor names to shard
 * names (see isShardName). `metadata` is ignored. Errors are ERR_MODEL_INDEX naming `file`.
 */
export function parseSafetensorsIndex(
  json: unknown,
  file: string = SAFETENSORS_INDEX_FILE,
): SafetensorsIndex {
  if (!isRecord(json)) throw indexError(file, 'is not a JSON object')
  const map = json.weight_map
  if (!isRecord(map)) throw indexError(file, 'has no weight_map object')
  const entries = Object.entries(map)
  if (entries.length === 0) throw indexError(file, 'weight_map is empty')
  if (entries.length > MAX_TENSORS) throw indexError(file, `weight_map has over ${MAX_TENSORS} tensors`)
  const weightMap = new Map<string, string>()
  const shards = new Set<string>()
  for (const [tensor, shard] of entries) {
    if (tensor === '') throw indexError(file, 'weight_map has an empty tensor name')
    if (!isShardName(shard)) {
      throw new ModelFileError(
        'ERR_MODEL_INDEX',
        file,
        `weight_map points to ${JSON.stringify(shard)}, which is not a plain *.safetensors file name in the model directory`,
        { tensor },
      )
    }
    weightMap.set(tensor, shard)
    shards.add(shard)
  }
  return { weightMap, shards: [...shards] }
}

function indexError(file: string, message: string): ModelFileError {
  return new ModelFileError('ERR_MODEL_INDEX', file, message)
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
