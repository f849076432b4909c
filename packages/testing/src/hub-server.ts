import { createHash, randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'

/**
 * A local stand-in for the Hugging Face Hub on 127.0.0.1, faithful to what the downloader
 * relies on: `/api/models/{repo}/revision/{rev}` listings (siblings with size, blobId and
 * lfs.sha256), `/{repo}/resolve/{rev}/{path}` answering LFS files with a 302 to a CDN URL
 * carrying X-Linked-Etag / X-Linked-Size / X-Repo-Commit, plain files with their git blob id as
 * ETag, Range and If-Range, bearer tokens for private repos, and `/raw/{repo}/{path}` as a plain
 * static directory. Every request is recorded with the body bytes it was sent, and faults can
 * be injected per file.
 */

export type Fault =
  /** Sends `bytes` bytes of the body, then drops the connection. */
  | { kind: 'drop-after'; path: string; bytes: number; times?: number }
  /** Sends `bytes` bytes, then holds the connection open, sending nothing more. */
  | { kind: 'stall-after'; path: string; bytes: number; times?: number }
  /** Flips one byte of the body; headers (ETag, sha256) stay those of the real file. */
  | { kind: 'corrupt'; path: string; times?: number }
  /** Answers with this status instead. */
  | { kind: 'status'; path: string; status: number; times?: number }
  /** The resolve URL redirects to itself forever. */
  | { kind: 'redirect-loop'; path: string; times?: number }
  /** The resolve URL's X-Repo-Commit names another commit (a branch moved mid-download). */
  | { kind: 'wrong-commit'; path: string; times?: number }
  /** The resolve URL redirects to `location`. */
  | { kind: 'redirect-to'; path: string; location: string; times?: number }

export interface RequestRecord {
  readonly method: string
  readonly url: string
  /** The repo file the request was for (resolve, cdn and raw requests), else undefined. */
  file: string | undefined
  readonly range: string | undefined
  readonly authorization: string | undefined
  status: number
  /** Body bytes written to the socket. */
  bytes: number
}

interface Repo {
  readonly commit: string
  readonly files: ReadonlyMap<string, Uint8Array>
  readonly token: string | undefined
  readonly lfs: (path: string) => boolean
}

export interface TestHub {
  readonly url: string
  readonly requests: RequestRecord[]
  addRepo(
    repo: string,
    files: ReadonlyMap<string, Uint8Array>,
    opts?: { token?: string; lfs?: (path: string) => boolean },
  ): { commit: string }
  fault(fault: Fault): void
  clearFaults(): void
  /** Body bytes sent for `file` (all requests, or those after `since`). */
  bytesFor(file: string, since?: number): number
  /** Resolves once a stall-after fault has sent its bytes. */
  stalled(): Promise<RequestRecord>
  close(): Promise<void>
}

export const sha256Hex = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
const gitOid = (b: Uint8Array) => createHash('sha1').update(`blob ${b.byteLength}\0`).update(b).digest('hex')

/** Reads every file of a model directory, for addRepo. */
export async function filesOf(dir: string): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>()
  for (const name of await readdir(dir)) files.set(name, new Uint8Array(await readFile(join(dir, name))))
  return files
}

export async function startTestHub(): Promise<TestHub> {
  const repos = new Map<string, Repo>()
  const bySha = new Map<string, { repo: Repo; path: string }>()
  const requests: RequestRecord[] = []
  let faults: Array<Fault & { used: number }> = []
  const stalls: RequestRecord[] = []
  let cdnUrl = ''
  let stallsSeen = 0
  const stallWaiters: Array<() => void> = []

  const takeFault = (path: string | undefined, kinds: readonly Fault['kind'][]) => {
    const f = faults.find((x) => x.path === path && kinds.includes(x.kind) && x.used < (x.times ?? 1))
    if (f !== undefined) f.used++
    return f
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://hub')
    const rec: RequestRecord = {
      method: req.method ?? 'GET',
      url: url.pathname,
      file: undefined,
      range: req.headers.range,
      authorization: req.headers.authorization,
      status: 0,
      bytes: 0,
    }
    requests.push(rec)
    res.on('finish', () => {
      rec.status = res.statusCode
    })
    rec.status = res.statusCode
    route(req, res, url, rec)
  })

  function route(req: IncomingMessage, res: ServerResponse, url: URL, rec: RequestRecord) {
    const parts = url.pathname
      .split('/')
      .filter((p) => p !== '')
      .map(decodeURIComponent)
    const notFound = (code: string) => {
      res.writeHead(404, { 'x-error-code': code, 'x-error-message': `${code} (test hub)` }).end()
    }
    const authorized = (repo: Repo) => {
      if (repo.token === undefined || req.headers.authorization === `Bearer ${repo.token}`) return true
      res.writeHead(401, { 'x-error-message': 'Invalid credentials in Authorization header' }).end()
      return false
    }
    if (parts[0] === 'api' && parts[1] === 'models') {
      const revAt = parts.indexOf('revision')
      const repo = repos.get(parts.slice(2, revAt).join('/'))
      if (repo === undefined || revAt < 0) return notFound('RepoNotFound')
      if (!authorized(repo)) return
      const rev = parts.slice(revAt + 1).join('/')
      if (rev !== 'main' && rev !== repo.commit) return notFound('RevisionNotFound')
      const siblings = [...repo.files].map(([rfilename, bytes]) => ({
        rfilename,
        size: bytes.byteLength,
        blobId: repo.lfs(rfilename) ? gitOid(randomBytes(8)) : gitOid(bytes),
        ...(repo.lfs(rfilename)
          ? { lfs: { sha256: sha256Hex(bytes), size: bytes.byteLength, pointerSize: 134 } }
          : {}),
      }))
      const body = JSON.stringify({ id: parts.slice(2, revAt).join('/'), sha: repo.commit, siblings })
      res.writeHead(200, { 'content-type': 'application/json' }).end(body)
      return
    }
    if (parts[0] === 'cdn') {
      const hit = bySha.get(parts[1] ?? '')
      if (hit === undefined) return notFound('EntryNotFound')
      rec.file = hit.path
      return send(req, res, rec, hit.path, hit.repo.files.get(hit.path) as Uint8Array, `"${parts[1]}"`)
    }
    if (parts[0] === 'raw') {
      const path = parts.at(-1) ?? ''
      const repo = repos.get(parts.slice(1, -1).join('/'))
      const bytes = repo?.files.get(path)
      if (bytes === undefined) return notFound('EntryNotFound')
      rec.file = path
      return send(req, res, rec, path, bytes, `"${sha256Hex(bytes)}"`)
    }
    const at = parts.indexOf('resolve')
    const repo = repos.get(parts.slice(0, at).join('/'))
    if (at < 1 || repo === undefined) return notFound('RepoNotFound')
    if (!authorized(repo)) return
    const rev = parts[at + 1]
    const path = parts.slice(at + 2).join('/')
    rec.file = path
    if (rev !== 'main' && rev !== repo.commit) return notFound('RevisionNotFound')
    const bytes = repo.files.get(path)
    if (bytes === undefined) return notFound('EntryNotFound')
    const redirect = takeFault(path, ['redirect-loop', 'redirect-to'])
    if (redirect !== undefined) {
      const location = redirect.kind === 'redirect-to' ? redirect.location : url.pathname
      res.writeHead(302, { location }).end()
      return
    }
    const moved = takeFault(path, ['wrong-commit']) !== undefined
    const common = { 'x-repo-commit': moved ? 'f'.repeat(40) : repo.commit }
    if (repo.lfs(path)) {
      const sha = sha256Hex(bytes)
      res
        .writeHead(302, {
          ...common,
          // Another origin, as the real CDN is: the token must not follow the redirect.
          location: `${cdnUrl}/cdn/${sha}?X-Amz-Signature=${randomBytes(4).toString('hex')}`,
          'x-linked-etag': `"${sha}"`,
          'x-linked-size': String(bytes.byteLength),
          etag: `"${sha}"`,
        })
        .end()
      return
    }
    for (const [k, v] of Object.entries(common)) res.setHeader(k, v)
    send(req, res, rec, path, bytes, `"${gitOid(bytes)}"`)
  }

  function send(
    req: IncomingMessage,
    res: ServerResponse,
    rec: RequestRecord,
    path: string,
    bytes: Uint8Array,
    etag: string,
  ): void {
    const status = req.method === 'HEAD' ? undefined : takeFault(path, ['status'])
    if (status?.kind === 'status') {
      res.writeHead(status.status).end()
      return
    }
    let start = 0
    let end = bytes.byteLength - 1
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
    const ifRange = req.headers['if-range']
    const partial = m !== null && (ifRange === undefined || ifRange === etag)
    if (partial) {
      start = Number(m[1])
      end = m[2] === '' ? end : Math.min(Number(m[2]), end)
      if (start >= bytes.byteLength) {
        res.writeHead(416, { 'content-range': `bytes */${bytes.byteLength}` }).end()
        return
      }
    }
    const headers = {
      etag,
      'accept-ranges': 'bytes',
      'content-length': String(end - start + 1),
      'content-type': 'application/octet-stream',
      ...(partial ? { 'content-range': `bytes ${start}-${end}/${bytes.byteLength}` } : {}),
    }
    if (req.method === 'HEAD') {
      res.writeHead(partial ? 206 : 200, headers).end()
      return
    }
    let body = bytes.subarray(start, end + 1)
    if (takeFault(path, ['corrupt']) !== undefined && body.byteLength > 0) {
      body = Uint8Array.from(body)
      body[body.byteLength >> 1] = (body[body.byteLength >> 1] as number) ^ 0xff
    }
    res.writeHead(partial ? 206 : 200, headers)
    const cut = takeFault(path, ['drop-after', 'stall-after'])
    if (cut?.kind === 'drop-after' || cut?.kind === 'stall-after') {
      const head = body.subarray(0, cut.bytes)
      rec.bytes += head.byteLength
      res.write(head, () => {
        if (cut.kind === 'drop-after') res.socket?.destroy()
        else {
          stalls.push(rec)
          for (const w of stallWaiters.splice(0)) w()
        }
      })
      return
    }
    rec.bytes += body.byteLength
    res.end(body)
  }

  const cdn = createServer(server.listeners('request')[0] as Parameters<typeof createServer>[1] & object)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  cdnUrl = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    addRepo(repo, files, opts = {}) {
      const commit = randomBytes(20).toString('hex')
      const entry: Repo = {
        commit,
        files,
        token: opts.token,
        lfs: opts.lfs ?? ((p) => p.endsWith('.safetensors')),
      }
      repos.set(repo, entry)
      for (const [path, bytes] of files)
        if (entry.lfs(path)) bySha.set(sha256Hex(bytes), { repo: entry, path })
      return { commit }
    },
    fault(fault) {
      faults.push({ ...fault, used: 0 })
    },
    clearFaults() {
      faults = []
    },
    bytesFor(file, since = 0) {
      return requests.slice(since).reduce((sum, r) => sum + (r.file === file ? r.bytes : 0), 0)
    },
    async stalled() {
      while (stalls.length <= stallsSeen) await new Promise<void>((resolve) => stallWaiters.push(resolve))
      return stalls[stallsSeen++] as RequestRecord
    },
    async close() {
      for (const s of [server, cdn]) {
        s.closeAllConnections()
        await new Promise<void>((resolve) => s.close(() => resolve()))
      }
    },
  }
}
