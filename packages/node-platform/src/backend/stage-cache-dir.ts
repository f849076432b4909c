import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { arch, cpus } from 'node:os'
import { dirname, join } from 'node:path'
import type { StageCache, StageCacheKey, StageGraph } from '@butterfly/core'
import type { InferenceSession } from 'onnxruntime-common'
import * as ort from 'onnxruntime-node'

export interface StageCacheDirInit {
  readonly dir: string
  /** Most bytes the entries may take together; the least recently opened go first (default 8 GiB). */
  readonly maxBytes?: number
}

export const DEFAULT_STAGE_CACHE_BYTES = 8 * 2 ** 30
const ENTRY = 'entry.json'
const MODEL = 'stage.onnx'
const OPTIMIZED_DATA = 'stage.bin'
/** Staging directories older than this are a crashed writer's and are removed. */
const STALE_STAGING_MS = 3_600_000

/**
 * A StageCache in a directory, one subdirectory per stage named by a SHA-256 of what the stage
 * depends on. On the CPU execution provider an entry is onnxruntime's optimised model with its
 * weights already pre-packed for the machine's kernels ("save_external_prepacked_constant_
 * initializers"), mmap'd at load: opening it skips the graph build, the weights' download or
 * read, and the packing, which together were most of a stage's load. Other providers (and
 * int8-activation int4 stages, see prepacked) keep the plain graph, which skips the build and
 * the download only. Writes go to a staging directory renamed into place, so a reader sees a whole
 * entry or none; any failure to read or write an entry falls back to building the stage, so
 * the cache can slow nothing down but its first write.
 */
export function createStageCacheDir(init: StageCacheDirInit): StageCache {
  const maxBytes = init.maxBytes ?? DEFAULT_STAGE_CACHE_BYTES
  const entryDir = (key: StageCacheKey, options: InferenceSession.SessionOptions) =>
    join(init.dir, entryKey(key.description, options))

  return {
    async open(key, options) {
      const at = entryDir(key, options)
      if ((await stat(join(at, ENTRY)).catch(() => undefined)) === undefined) return undefined
      try {
        const session = await ort.InferenceSession.create(join(at, MODEL), openOptions(key, options))
        const now = new Date()
        await utimes(join(at, ENTRY), now, now).catch(() => undefined)
        return session as unknown as InferenceSession
      } catch {
        // A damaged entry (a disk error, a file edited by hand) is rebuilt, never trusted.
        await rm(at, { recursive: true, force: true }).catch(() => undefined)
        return undefined
      }
    },

    async store(key, graph, options) {
      const at = entryDir(key, options)
      const staging = `${at}.tmp-${randomBytes(6).toString('hex')}`
      try {
        await mkdir(staging, { recursive: true })
        const session = await writeAndLoad(staging, graph, key, options)
        try {
          const bytes = await entryBytes(staging)
          if (bytes <= maxBytes) {
            await writeFile(
              join(staging, ENTRY),
              JSON.stringify({ bytes, written: new Date().toISOString() }),
            )
            await evict(init.dir, maxBytes - bytes)
            // Another process may have stored the same stage meanwhile; its entry stays.
            await rename(staging, at).catch(() => undefined)
          }
        } catch {
          // The session is good; only keeping it failed (disk full, permissions).
        }
        return session
      } finally {
        await rm(staging, { recursive: true, force: true }).catch(() => undefined)
      }
    },
  }
}

/**
 * Whether the entry is the optimised, pre-packed model: on CPU only, and not for MatMulNBits
 * over int8 activations, whose weights onnxruntime 1.30 reads back from a pre-packed file
 * wrongly (NaN logits, or the process crashes; the stage-cache test shows it).
 */
function prepacked(key: StageCacheKey, options: InferenceSession.SessionOptions): boolean {
  const eps = options.executionProviders ?? ['cpu']
  const cpu = eps.length === 1 && (eps[0] === 'cpu' || (eps[0] as { name?: string }).name === 'cpu')
  return cpu && !(key.init.int4Compute === 'int8' && key.init.config.quantization !== undefined)
}

/** The optimised model was optimised at the level asked for when it was written. */
function openOptions(
  key: StageCacheKey,
  options: InferenceSession.SessionOptions,
): InferenceSession.SessionOptions {
  return prepacked(key, options) ? { ...options, graphOptimizationLevel: 'disabled' } : options
}

/**
 * Writes the plain graph, then loads it; on CPU the load also writes the optimised, pre-packed
 * model, after which the plain files go (the session keeps its own mapping of them).
 */
async function writeAndLoad(
  at: string,
  graph: StageGraph,
  key: StageCacheKey,
  options: InferenceSession.SessionOptions,
): Promise<InferenceSession> {
  const optimise = prepacked(key, options)
  const plain = optimise ? join(at, 'plain.onnx') : join(at, MODEL)
  await writeFile(plain, graph.bytes)
  const external = graph.external === undefined ? undefined : join(at, graph.external.location)
  if (graph.external !== undefined && external !== undefined) {
    const file = await open(external, 'w')
    try {
      for (const chunk of graph.external.chunks) await file.write(chunk)
    } finally {
      await file.close()
    }
  }
  if (!optimise) return (await ort.InferenceSession.create(plain, options)) as unknown as InferenceSession
  const session = await ort.InferenceSession.create(plain, {
    ...options,
    optimizedModelFilePath: join(at, MODEL),
    extra: {
      ...(options.extra as Record<string, unknown> | undefined),
      session: {
        ...((options.extra as { session?: Record<string, unknown> } | undefined)?.session ?? {}),
        optimized_model_external_initializers_file_name: OPTIMIZED_DATA,
        optimized_model_external_initializers_min_size_in_bytes: '1024',
        save_external_prepacked_constant_initializers: '1',
      },
    },
  })
  await rm(plain, { force: true })
  if (external !== undefined) await rm(external, { force: true })
  return session as unknown as InferenceSession
}

async function entryBytes(at: string): Promise<number> {
  let total = 0
  for (const name of await readdir(at)) total += (await stat(join(at, name))).size
  return total
}

/** Removes the least recently opened entries until at most `budget` bytes remain. */
async function evict(dir: string, budget: number): Promise<void> {
  const entries: { path: string; bytes: number; used: number }[] = []
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const path = join(dir, name)
    if (name.includes('.tmp-')) {
      const s = await stat(path).catch(() => undefined)
      if (s !== undefined && Date.now() - s.mtimeMs > STALE_STAGING_MS)
        await rm(path, { recursive: true, force: true })
      continue
    }
    if (!/^[0-9a-f]{64}$/.test(name)) continue
    const marker = await stat(join(path, ENTRY)).catch(() => undefined)
    const bytes = await readFile(join(path, ENTRY), 'utf8')
      .then((text) => Number((JSON.parse(text) as { bytes?: unknown }).bytes))
      .catch(() => Number.NaN)
    // A marker that cannot be read or parsed is a damaged entry: it goes, and never blocks eviction.
    if (marker === undefined || !Number.isFinite(bytes)) {
      await rm(path, { recursive: true, force: true })
      continue
    }
    entries.push({ path, bytes, used: marker.mtimeMs })
  }
  entries.sort((a, b) => a.used - b.used)
  let total = entries.reduce((sum, e) => sum + e.bytes, 0)
  for (const e of entries) {
    if (total <= budget) break
    await rm(e.path, { recursive: true, force: true })
    total -= e.bytes
  }
}

/**
 * Everything an entry depends on outside core's description: the graph builder's code (core's
 * built files, hashed once), the runtime's version, the machine (pre-packed layouts follow the
 * CPU's kernels) and the options that shape the optimised graph.
 */
function entryKey(description: string, options: InferenceSession.SessionOptions): string {
  return createHash('sha256')
    .update(
      JSON.stringify({
        description,
        builder: builderHash(),
        ort: ort.env.versions.node,
        machine: [arch(), cpus()[0]?.model ?? ''],
        eps: options.executionProviders ?? ['cpu'],
        level: options.graphOptimizationLevel ?? 'all',
      }),
    )
    .digest('hex')
}

let builder: string | undefined
function builderHash(): string {
  if (builder !== undefined) return builder
  const hash = createHash('sha256')
  let root: string
  try {
    root = dirname(createRequire(import.meta.url).resolve('@butterfly/core'))
  } catch {
    // Without core's files nothing says an entry was built by this code: entries live for
    // this process only.
    builder = randomBytes(16).toString('hex')
    return builder
  }
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(dir, e.name)
      if (e.isDirectory()) walk(path)
      else if (e.name.endsWith('.js')) hash.update(path.slice(root.length)).update(readFileSync(path))
    }
  }
  walk(root)
  builder = hash.digest('hex')
  return builder
}
