import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { ModelFileError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import { parseModelConfig } from '../model/parse-model-config.js'
import { storedTensorDtypes } from '../quant/weight-encoding.js'
import type { ByteSource } from '../weights/byte-source.js'
import { isShardName, SAFETENSORS_FILE } from '../weights/safetensors-index.js'
import { ShardedSafetensors } from '../weights/sharded-safetensors.js'
import type { WeightProvider } from '../weights/weight-provider.js'
import { HttpSource } from './http-source.js'

/** What the server publishes at `${modelPath}manifest.json`. */
export interface ModelManifest {
  readonly modelId: string
  /** 'int4' when config.json marks int4 projections, else the float dtype(s) of the file. */
  readonly weights?: string
  readonly files: Readonly<Record<string, { size: number; sha256: string }>>
  /**
   * Absolute byte range of each tensor in its weights file. `file` names the shard of a sharded
   * checkpoint (see SafetensorsIndex); absent, the tensor is in model.safetensors.
   */
  readonly tensors: Readonly<
    Record<
      string,
      { begin: number; end: number; sha256: string; file?: string; dtype?: string; shape?: number[] }
    >
  >
}

export interface RemoteModel {
  readonly config: ModelConfig
  readonly manifest: ModelManifest
  /** Fetches one tensor by byte range and checks it against the manifest's hash. */
  readonly weights: WeightProvider
  /** Bytes the tensors of layers [start, end) will download (for progress bars). */
  stageBytes(names: readonly string[]): number
}

/**
 * Where a peer keeps tensors it downloaded, keyed by their SHA-256 (a browser's Cache Storage,
 * for one). Entries are checked against the manifest's hash on the way out, so a damaged or
 * planted entry is refetched, never used.
 */
export interface TensorCache {
  get(sha256: string): Promise<Uint8Array | undefined>
  put(sha256: string, bytes: Uint8Array): Promise<void>
}

export interface RemoteModelOptions {
  readonly cache?: TensorCache
  readonly headers?: Record<string, string>
  readonly signal?: AbortSignal
  /** Called with the bytes of each tensor as it arrives. */
  readonly onBytes?: (bytes: number) => void
}

/**
 * Opens the model a server publishes under `baseUrl` (ending in '/'), reading only the manifest
 * and config. A weights file (model.safetensors, or a shard the manifest names) is opened on the
 * first read of one of its tensors, so a stage touches only the shards that hold its layers.
 */
export async function openRemoteModel(
  baseUrl: string,
  options: RemoteModelOptions = {},
): Promise<RemoteModel> {
  const headers = options.headers ?? {}
  const init = { headers, ...(options.signal ? { signal: options.signal } : {}) }
  const manifest = parseManifest(await fetchJson(`${baseUrl}manifest.json`, init), `${baseUrl}manifest.json`)
  const config = parseModelConfig(await fetchJson(`${baseUrl}config.json`, init), `${baseUrl}config.json`)
  const weightMap = new Map(Object.entries(manifest.tensors).map(([n, t]) => [n, t.file ?? SAFETENSORS_FILE]))
  const hits = new Set<string>()
  const opener = async (file: string) => {
    const http = await HttpSource.open(`${baseUrl}${file}`, headers, options.signal)
    return cachedSource(http, file, manifest, options.cache, hits)
  }
  const shards = ShardedSafetensors.sharded(
    { weightMap, shards: [...new Set(weightMap.values())] },
    opener,
    `${baseUrl}manifest.json`,
  )
  const weights: WeightProvider = async (name, shape) => {
    // Float tensors are F32 or F16; an int4 weight's .qweight is U8 and its .scales F16 or F32.
    const dtype = storedTensorDtypes(name, ['F32', 'F16'])
    const t = await shards.read(name, { dtype, shape }, options.signal)
    const expected = manifest.tensors[name]?.sha256
    const actual = bytesToHex(sha256(t.data))
    if (expected === actual && !hits.has(expected))
      await options.cache?.put(expected, t.data).catch(() => undefined)
    if (expected !== actual) {
      throw new ModelFileError(
        'ERR_MODEL_FILE_HASH',
        `${baseUrl}${shards.fileOf(name)}`,
        `content hash ${actual} does not match the manifest`,
        { tensor: name },
      )
    }
    options.onBytes?.(t.data.byteLength)
    return t
  }
  return {
    config,
    manifest,
    weights,
    stageBytes: (names) =>
      names.reduce((sum, n) => {
        const t = manifest.tensors[n]
        return sum + (t === undefined ? 0 : t.end - t.begin)
      }, 0),
  }
}

/**
 * A weights file, answering a read of exactly one tensor's bytes from the cache when it holds
 * bytes with that tensor's hash; everything else (the header, misses) goes to the network.
 */
function cachedSource(
  http: HttpSource,
  file: string,
  manifest: ModelManifest,
  cache: TensorCache | undefined,
  hits: Set<string>,
): ByteSource {
  const byRange = new Map<string, string>()
  for (const t of Object.values(manifest.tensors)) {
    if ((t.file ?? SAFETENSORS_FILE) === file) byRange.set(`${t.begin}:${t.end - t.begin}`, t.sha256)
  }
  return {
    name: http.name,
    size: http.size,
    async read(offset, length, signal) {
      const hash = byRange.get(`${offset}:${length}`)
      if (cache !== undefined && hash !== undefined) {
        const bytes = await cache.get(hash).catch(() => undefined)
        if (bytes !== undefined && bytes.length === length && bytesToHex(sha256(bytes)) === hash) {
          hits.add(hash)
          return bytes
        }
      }
      return http.read(offset, length, signal)
    },
  }
}

/** GETs JSON; unreachable servers, HTTP errors and bad JSON become ModelFileErrors naming the URL. */
export interface FetchInit {
  readonly headers?: Record<string, string>
  readonly signal?: AbortSignal
}

export async function fetchJson(url: string, init: FetchInit = {}): Promise<unknown> {
  let res: Awaited<ReturnType<typeof fetch>>
  try {
    res = await fetch(url, init)
  } catch (err) {
    throw new ModelFileError('ERR_MODEL_FILE_READ', url, `cannot reach the server: ${(err as Error).message}`)
  }
  if (!res.ok) throw new ModelFileError('ERR_MODEL_FILE_READ', url, `server answered ${res.status}`)
  try {
    return await res.json()
  } catch {
    throw new ModelFileError('ERR_MODEL_FILE_HEADER', url, 'not valid JSON')
  }
}

function parseManifest(v: unknown, where: string): ModelManifest {
  const bad = (m: string) => new ModelFileError('ERR_MODEL_FILE_HEADER', where, m)
  if (typeof v !== 'object' || v === null) throw bad('manifest must be an object')
  const m = v as Record<string, unknown>
  if (typeof m.modelId !== 'string') throw bad('manifest.modelId must be a string')
  if (typeof m.tensors !== 'object' || m.tensors === null) throw bad('manifest.tensors must be an object')
  for (const [name, t] of Object.entries(m.tensors)) {
    const e = t as Record<string, unknown>
    if (typeof e?.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256))
      throw bad(`manifest.tensors.${name}.sha256 is invalid`)
    if (!isOffset(e.begin) || !isOffset(e.end) || e.end < e.begin)
      throw bad(`manifest.tensors.${name} has an invalid byte range`)
    // The name becomes part of a URL: only a plain *.safetensors file name may appear here.
    if (e.file !== undefined && !isShardName(e.file))
      throw bad(`manifest.tensors.${name}.file ${JSON.stringify(e.file)} is not a weights file name`)
  }
  return m as unknown as ModelManifest
}

function isOffset(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}
