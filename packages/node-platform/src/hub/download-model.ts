import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  MAX_INDEX_BYTES,
  ModelFileError,
  parseModelConfig,
  parseSafetensorsIndexBytes,
  SAFETENSORS_FILE,
  SAFETENSORS_INDEX_FILE,
} from '@butterfly/core'
import { ModelDownloadError, ModelNotFoundError } from '../errors.js'
import { OPTIONAL_CHAT_FILES, TOKENIZER_FILES } from '../models/tokenizer-files.js'
import { downloadFile, type FileExpectation, type PlannedFile } from './file-download.js'
import { fetchHfListing } from './hf-listing.js'
import { DEFAULT_HTTP_POLICY, type HttpPolicy } from './hub-http.js'
import { type RemoteModelSpec, resolveHfEndpoint } from './model-spec.js'
import { fetchUrlSnapshot } from './url-snapshot.js'

/** Byte progress of the weights (the bulk of a download); a TTY shows it as a bar. */
export interface DownloadProgress {
  start(totalBytes: number): void
  advance(bytes: number): void
  stop(): void
}

export interface DownloadModelOptions {
  /** Hub endpoint (checked like --hf-endpoint); default $HF_ENDPOINT, else https://huggingface.co. */
  readonly endpoint?: string | undefined
  /** Default $HF_TOKEN. Sent only to the hub endpoint (never to a CDN or a plain URL). */
  readonly token?: string | undefined
  /** Default: $HF_HUB_OFFLINE is 1/true/yes — use the cache and make no request (hf: only). */
  readonly offline?: boolean | undefined
  readonly signal?: AbortSignal | undefined
  readonly progress?: DownloadProgress | undefined
  readonly log?: ((line: string) => void) | undefined
  readonly headersTimeoutMs?: number
  readonly idleTimeoutMs?: number
  readonly retries?: number
  readonly retryDelayMs?: number
}

/** Caps on files parsed in memory, checked before they are read. */
export const MAX_CONFIG_BYTES = 1 * 2 ** 20
export const MAX_TOKENIZER_BYTES = 256 * 2 ** 20
export const MAX_TOKENIZER_CONFIG_BYTES = 16 * 2 ** 20

/**
 * Downloads a model into `cache` and returns its directory, ready for loadModel:
 * `hub/<org>--<repo>/<commit>/` for hf: specs, `url/<hash>/<snapshot>/` for URLs. Files already
 * complete are not fetched again; a part file left by an interrupted run is resumed.
 */
export async function downloadModel(
  spec: RemoteModelSpec,
  cache: string,
  options: DownloadModelOptions = {},
): Promise<string> {
  const policy: HttpPolicy = {
    ...DEFAULT_HTTP_POLICY,
    signal: options.signal,
    ...(options.headersTimeoutMs === undefined ? {} : { headersTimeoutMs: options.headersTimeoutMs }),
    ...(options.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleTimeoutMs }),
  }
  return spec.kind === 'hf'
    ? downloadHf(spec.repo, spec.revision, cache, policy, options)
    : downloadUrl(spec.base, cache, policy, options)
}

async function downloadHf(
  repo: string,
  revision: string,
  cache: string,
  basePolicy: HttpPolicy,
  options: DownloadModelOptions,
): Promise<string> {
  const repoDir = join(cache, 'hub', repo.replace('/', '--'))
  const refPath = join(repoDir, 'refs', encodeURIComponent(revision))
  const name = `hf:${repo}@${revision}`
  if (options.offline ?? /^(1|true|yes)$/i.test(process.env.HF_HUB_OFFLINE ?? '')) {
    return offlineSnapshot(repoDir, refPath, name)
  }
  const endpoint = resolveHfEndpoint(options.endpoint)
  const token = options.token ?? process.env.HF_TOKEN
  const policy = { ...basePolicy, token, tokenOrigin: new URL(endpoint).origin }
  const listing = await fetchHfListing(endpoint, repo, revision, policy)
  const dir = join(repoDir, listing.commit)
  await mkdir(dir, { recursive: true })
  await mkdir(join(repoDir, 'refs'), { recursive: true })
  await writeFile(refPath, listing.commit)

  const plan = (path: string, maxBytes?: number): PlannedFile => {
    const expect = listing.files.get(path)
    if (expect === undefined) throw new ModelNotFoundError(`${name} has no ${path}`)
    return {
      path,
      url: `${endpoint}/${repo}/resolve/${listing.commit}/${path}`,
      expect: { ...expect, commit: listing.commit },
      ...(maxBytes === undefined ? {} : { maxBytes }),
    }
  }
  const small = [plan('config.json', MAX_CONFIG_BYTES), plan('tokenizer.json', MAX_TOKENIZER_BYTES)]
  if (listing.files.has('tokenizer_config.json'))
    small.push(plan('tokenizer_config.json', MAX_TOKENIZER_CONFIG_BYTES))
  // The chat template and the stop ids, when the repository has them (loadModel validates).
  for (const f of OPTIONAL_CHAT_FILES) if (listing.files.has(f)) small.push(plan(f, TOKENIZER_FILES[f]))
  const sharded = listing.files.has(SAFETENSORS_INDEX_FILE)
  if (sharded) small.push(plan(SAFETENSORS_INDEX_FILE, MAX_INDEX_BYTES))
  else if (!listing.files.has(SAFETENSORS_FILE)) {
    throw new ModelNotFoundError(
      `${name} has neither ${SAFETENSORS_FILE} nor ${SAFETENSORS_INDEX_FILE}; only safetensors checkpoints can be downloaded`,
    )
  }
  const label = (p: string) => `${repo}/${p}`
  for (const f of small) await fetchPlanned(f, dir, label(f.path), policy, options)
  await checkConfig(dir)
  let weights: PlannedFile[]
  if (sharded) {
    const index = await readIndex(dir)
    weights = index.shards.map((shard) => {
      if (!listing.files.has(shard)) {
        throw new ModelFileError(
          'ERR_MODEL_INDEX',
          join(dir, SAFETENSORS_INDEX_FILE),
          `names shard ${shard}, which ${name} does not have`,
        )
      }
      return plan(shard)
    })
  } else {
    weights = [plan(SAFETENSORS_FILE)]
  }
  await fetchWeights(weights, dir, `hf:${repo}@${listing.commit.slice(0, 12)}`, label, policy, options)
  return dir
}

async function downloadUrl(
  base: string,
  cache: string,
  policy: HttpPolicy,
  options: DownloadModelOptions,
): Promise<string> {
  const root = join(cache, 'url', createHash('sha256').update(base).digest('hex').slice(0, 16))
  const snapshot = await fetchUrlSnapshot(base, policy, {
    config: MAX_CONFIG_BYTES,
    tokenizer: MAX_TOKENIZER_BYTES,
    tokenizerConfig: MAX_TOKENIZER_CONFIG_BYTES,
    index: MAX_INDEX_BYTES,
  })
  const dir = join(root, snapshot.id)
  await mkdir(dir, { recursive: true })
  for (const [path, bytes] of snapshot.small) {
    if (!(await isFile(join(dir, path)))) await writeAtomic(join(dir, path), bytes)
  }
  await checkConfig(dir)
  const unverified = snapshot.weights.filter((w) => w.expect.sha256 === undefined).map((w) => w.path)
  if (unverified.length > 0) {
    options.log?.(
      `warning: ${base} sends no SHA-256 ETag for ${unverified.join(', ')}; only size and safetensors structure are checked`,
    )
  }
  await fetchWeights(snapshot.weights, dir, base, (p) => `${base}${p}`, policy, options)
  return dir
}

/** Fetches the weights files not yet in `dir`, with one progress bar over all of them. */
async function fetchWeights(
  files: readonly PlannedFile[],
  dir: string,
  name: string,
  label: (path: string) => string,
  policy: HttpPolicy,
  options: DownloadModelOptions,
): Promise<void> {
  const missing: PlannedFile[] = []
  for (const f of files) if (!(await isComplete(join(dir, f.path), f.expect))) missing.push(f)
  if (missing.length === 0) return
  const total = missing.reduce((sum, f) => sum + (f.expect.size ?? 0), 0)
  options.log?.(`downloading ${name}: ${missing.length} weights file(s), ${total} bytes, into ${dir}`)
  options.progress?.start(total)
  try {
    for (const f of missing) {
      await fetchPlanned(f, dir, label(f.path), policy, options, (n) => options.progress?.advance(n))
    }
  } finally {
    options.progress?.stop()
  }
}

async function fetchPlanned(
  file: PlannedFile,
  dir: string,
  label: string,
  policy: HttpPolicy,
  options: DownloadModelOptions,
  onBytes?: (bytes: number) => void,
): Promise<void> {
  const dest = join(dir, file.path)
  if (await isComplete(dest, file.expect)) return
  if (file.maxBytes !== undefined && (file.expect.size ?? 0) > file.maxBytes) {
    throw new ModelDownloadError(
      'ERR_DOWNLOAD_SIZE',
      `${label} is ${file.expect.size} bytes, over the cap of ${file.maxBytes}`,
      { url: file.url },
    )
  }
  await downloadFile(file.url, dest, file.expect, {
    policy,
    retries: options.retries ?? 4,
    retryDelayMs: options.retryDelayMs ?? 500,
    label,
    maxBytes: file.maxBytes,
    onBytes,
    log: options.log,
  })
}

/** config.json must describe a model we can run before gigabytes of weights are fetched. */
async function checkConfig(dir: string): Promise<void> {
  const path = join(dir, 'config.json')
  const bytes = await readFile(path)
  if (bytes.byteLength > MAX_CONFIG_BYTES) {
    throw new ModelFileError('ERR_MODEL_FILE_HEADER', path, `is over the cap of ${MAX_CONFIG_BYTES} bytes`)
  }
  let json: unknown
  try {
    json = JSON.parse(bytes.toString('utf8'))
  } catch (err) {
    throw new ModelFileError('ERR_MODEL_FILE_HEADER', path, `is not valid JSON: ${(err as Error).message}`)
  }
  parseModelConfig(json, path)
}

async function readIndex(dir: string) {
  const path = join(dir, SAFETENSORS_INDEX_FILE)
  return parseSafetensorsIndexBytes(await readFile(path), path)
}

/** HF_HUB_OFFLINE: the snapshot the revision pointed to last time, if it is complete. */
async function offlineSnapshot(repoDir: string, refPath: string, name: string): Promise<string> {
  const offline = (why: string) =>
    new ModelDownloadError('ERR_DOWNLOAD_OFFLINE', `HF_HUB_OFFLINE is set and ${name} ${why}`)
  const commit = (await readFile(refPath, 'utf8').catch(() => '')).trim()
  if (!/^[0-9a-f]{40,64}$/.test(commit)) throw offline('was never downloaded')
  const dir = join(repoDir, commit)
  const need = ['config.json', 'tokenizer.json']
  if (await isFile(join(dir, SAFETENSORS_INDEX_FILE))) need.push(...(await readIndex(dir)).shards)
  else need.push(SAFETENSORS_FILE)
  for (const f of need) if (!(await isFile(join(dir, f)))) throw offline(`is incomplete in the cache (${f})`)
  return dir
}

async function isComplete(path: string, expect: FileExpectation): Promise<boolean> {
  const s = await stat(path).catch(() => undefined)
  return s?.isFile() === true && (expect.size === undefined || s.size === expect.size)
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() === true
}

async function writeAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`
  await writeFile(tmp, bytes)
  await rename(tmp, path)
}
