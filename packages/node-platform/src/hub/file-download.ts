import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { ModelFileError } from '@butterfly/core'
import { ModelDownloadError } from '../errors.js'
import { expectStatus, type HttpPolicy, hubRequest, withRetries } from './hub-http.js'

/** What the file must turn out to be, from the hub's listing or headers. */
export interface FileExpectation {
  readonly size?: number | undefined
  /** SHA-256 of the content (LFS files). */
  readonly sha256?: string | undefined
  /** Git blob id: SHA-1 of `blob <size>\0` + content (plain files in a git repo). */
  readonly gitOid?: string | undefined
  /** The commit the hub must say (X-Repo-Commit) it answered from, when it says one. */
  readonly commit?: string | undefined
}

/** Where one file of a download comes from and what it must be. */
export interface PlannedFile {
  readonly path: string
  readonly url: string
  readonly expect: FileExpectation
  readonly maxBytes?: number
}

export interface FileDownloadOptions {
  readonly policy: HttpPolicy
  /** Attempts after the first; each resumes where the last stopped. */
  readonly retries: number
  readonly retryDelayMs: number
  /** Names the file in errors and logs, e.g. `org/repo/model-00001-of-00002.safetensors`. */
  readonly label: string
  /** Refuses bodies past this when the size is not known beforehand. */
  readonly maxBytes?: number | undefined
  readonly onBytes?: ((bytes: number) => void) | undefined
  readonly log?: ((line: string) => void) | undefined
}

export interface FileDownload {
  /** Bytes received over the network by this call (resumed bytes excluded). */
  readonly fetched: number
  readonly sha256: string
  /** Whether the hub gave a checksum that the content was checked against. */
  readonly verified: boolean
}

const SHA256 = /^[0-9a-f]{64}$/
const GIT_OID = /^[0-9a-f]{40}$/

/**
 * Downloads `url` to `dest` through `dest.part`: an interrupted download (a dropped
 * connection, a killed process) continues from the part's length with a Range request; the
 * content is checked against the expected size and checksum, then renamed into place, so
 * `dest` exists only complete and verified. A checksum mismatch deletes the part and fails
 * with ERR_MODEL_FILE_HASH naming the file.
 */
export async function downloadFile(
  url: string,
  dest: string,
  expect: FileExpectation,
  opts: FileDownloadOptions,
): Promise<FileDownload> {
  const release = await lock(`${dest}.lock`, opts.label)
  try {
    return await fetchVerified(url, dest, expect, opts)
  } finally {
    await release()
  }
}

async function fetchVerified(
  url: string,
  dest: string,
  expect: FileExpectation,
  opts: FileDownloadOptions,
): Promise<FileDownload> {
  const part = `${dest}.part`
  const state = { hash: createHash('sha256'), have: 0, fetched: 0, reported: 0 }
  let etag: string | undefined
  let sha256 = expect.sha256
  let gitOid = expect.gitOid
  let size = expect.size
  const restart = async () => {
    await rm(part, { force: true })
    state.hash = createHash('sha256')
    state.have = 0
  }
  const attempt = async (n: number) => {
    // The part on disk is the truth (a previous run, or a write cut short): hash it once.
    const onDisk = (await stat(part).catch(() => undefined))?.size ?? 0
    if (onDisk !== state.have || n === 0) await rehash(part, onDisk, state)
    if (size !== undefined && state.have > size) await restart()
    if (state.have > state.reported) {
      opts.onBytes?.(state.have - state.reported)
      state.reported = state.have
    }
    if (size !== undefined && state.have === size && size > 0) return
    if (state.have > 0) opts.log?.(`resuming ${opts.label} at byte ${state.have}`)
    const headers: Record<string, string> = {}
    if (state.have > 0) {
      headers.range = `bytes=${state.have}-`
      if (etag?.startsWith('"')) headers['if-range'] = etag
    }
    const res = await hubRequest(url, { headers }, opts.policy)
    if (res.status === 416 && state.have > 0) {
      // The part is not a prefix of what the server has now: start over.
      await res.close()
      await restart()
      throw retry(`${opts.label}: the server refused to resume; starting over`, url)
    }
    await expectStatus(res, [200, 206], opts.label)
    const answered = res.hubHeaders.get('x-repo-commit')
    if (expect.commit !== undefined && answered !== null && answered !== expect.commit) {
      await res.close()
      throw new ModelDownloadError(
        'ERR_DOWNLOAD_RESPONSE',
        `${opts.label}: asked for commit ${expect.commit}, the hub answered from ${answered}`,
        { url },
      )
    }
    etag = res.headers.get('etag') ?? etag
    const linked = unquote(res.hubHeaders.get('x-linked-etag') ?? res.hubHeaders.get('etag'))
    if (sha256 === undefined && linked !== undefined && SHA256.test(linked)) sha256 = linked
    if (gitOid === undefined && sha256 === undefined && linked !== undefined && GIT_OID.test(linked)) {
      gitOid = linked
    }
    let total: number | undefined
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers.get('content-range') ?? '')
      if (m === null || Number(m[1]) !== state.have) {
        await res.close()
        await restart()
        throw retry(`${opts.label}: the server resumed at the wrong byte; starting over`, url)
      }
      total = Number(m[3])
    } else {
      if (state.have > 0) await restart() // the server ignored the range and sends it all
      const length = res.headers.get('content-length')
      total = length === null ? undefined : Number(length)
    }
    if (size !== undefined && total !== undefined && total !== size) {
      await res.close()
      throw new ModelDownloadError(
        'ERR_DOWNLOAD_SIZE',
        `${opts.label}: the listing says ${size} bytes, the server sends ${total}`,
        { url },
      )
    }
    size ??= total
    const cap = size ?? opts.maxBytes ?? Number.MAX_SAFE_INTEGER
    const file = await open(part, 'a')
    try {
      for await (const chunk of res.chunks()) {
        if (state.have + chunk.byteLength > cap) {
          await res.close()
          await file.close().catch(() => undefined)
          await restart()
          throw new ModelDownloadError('ERR_DOWNLOAD_SIZE', `${opts.label}: more than ${cap} bytes arrived`, {
            url,
          })
        }
        await file.write(chunk)
        state.hash.update(chunk)
        state.have += chunk.byteLength
        state.fetched += chunk.byteLength
        opts.onBytes?.(chunk.byteLength)
        state.reported = Math.max(state.reported, state.have)
      }
    } finally {
      await file.close().catch(() => undefined)
    }
    if (size !== undefined && state.have < size) {
      throw retry(`${opts.label}: the connection ended after ${state.have} of ${size} bytes`, url)
    }
  }
  await withRetries(attempt, {
    retries: opts.retries,
    delayMs: opts.retryDelayMs,
    signal: opts.policy.signal,
    onRetry: (err) => opts.log?.(`${err.message}; retrying`),
  })

  const actual = state.hash.digest('hex')
  const mismatch = async (what: string, got: string, want: string) => {
    await rm(part, { force: true })
    return new ModelFileError(
      'ERR_MODEL_FILE_HASH',
      opts.label,
      `${what} ${got} does not match the hub's ${want}; the download was deleted`,
    )
  }
  if (sha256 !== undefined && actual !== sha256) throw await mismatch('sha256', actual, sha256)
  if (sha256 === undefined && gitOid !== undefined) {
    const oid = await gitBlobOid(part, state.have)
    if (oid !== gitOid) throw await mismatch('git blob id', oid, gitOid)
  }
  await rename(part, dest)
  return { fetched: state.fetched, sha256: actual, verified: sha256 !== undefined || gitOid !== undefined }
}

function retry(message: string, url: string): ModelDownloadError {
  return new ModelDownloadError('ERR_DOWNLOAD_NETWORK', message, { url, retryable: true })
}

async function rehash(part: string, size: number, state: { hash: Hash; have: number }): Promise<void> {
  state.hash = createHash('sha256')
  state.have = 0
  if (size === 0) return
  for await (const chunk of createReadStream(part, { end: size - 1 })) {
    state.hash.update(chunk as Buffer)
    state.have += (chunk as Buffer).byteLength
  }
}

/** Git's object id of a file: SHA-1 over `blob <size>\0` and the content. */
async function gitBlobOid(path: string, size: number): Promise<string> {
  const hash = createHash('sha1').update(`blob ${size}\0`)
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

function unquote(etag: string | null): string | undefined {
  if (etag === null) return undefined
  return etag.replace(/^W\//, '').replace(/^"(.*)"$/, '$1')
}

/**
 * An exclusive lock file holding our pid. Two processes appending to one part file would
 * interleave garbage, so the second fails fast; a lock left by a dead process is taken over.
 */
async function lock(path: string, label: string): Promise<() => Promise<void>> {
  for (let tries = 0; ; tries++) {
    try {
      await writeFile(path, String(process.pid), { flag: 'wx' })
      return () => rm(path, { force: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || tries > 0) throw err
    }
    const pid = Number(await readFile(path, 'utf8').catch(() => ''))
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
      throw new ModelDownloadError(
        'ERR_DOWNLOAD_BUSY',
        `${label} is being downloaded by process ${pid} into the same cache; wait for it or stop it`,
      )
    }
    await rm(path, { force: true })
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
