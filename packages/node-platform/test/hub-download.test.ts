import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { sha256Hex, shardName, startHubFixture } from '@butterfly/testing/node'
import { afterAll, beforeEach, describe, expect, test, vi } from 'vitest'
import { type DownloadModelOptions, downloadModel } from '../src/hub/download-model.js'
import { parseRemoteSpec } from '../src/hub/model-spec.js'
import { loadModel } from '../src/models/model-store.js'

// In-process downloads against the local test hub; the CLI suite (hub-cli) covers real processes.
vi.setConfig({ testTimeout: 30_000 })

const { hub, single, sharded, freshCache, close } = await startHubFixture('bf-hub-')
hub.addRepo('org/tiny', single)
hub.addRepo('org/sharded', sharded)
hub.addRepo('org/private', single, { token: 'hf_secret' })
afterAll(close)
beforeEach(() => hub.clearFaults())
const SHARD1 = shardName(0, 2)
const SHARD2 = shardName(1, 2)
const fast: DownloadModelOptions = { retryDelayMs: 5, idleTimeoutMs: 2000, headersTimeoutMs: 2000 }
const download = (spec: string, cache: string, opts: DownloadModelOptions = {}) =>
  downloadModel(parseRemoteSpec(spec), cache, {
    endpoint: hub.url,
    token: '',
    offline: false,
    ...fast,
    ...opts,
  })
const weightRequests = (since: number) =>
  hub.requests
    .slice(since)
    .filter((r) => r.file?.endsWith('.safetensors') && r.method === 'GET' && r.status !== 302)

describe('model specs', () => {
  test.each([
    ['hf:org/repo', { kind: 'hf', repo: 'org/repo', revision: 'main' }],
    ['hf:org/repo@v1.0', { kind: 'hf', repo: 'org/repo', revision: 'v1.0' }],
    ['hf:gpt2', { kind: 'hf', repo: 'gpt2', revision: 'main' }],
    ['hf:Org-1/Repo_2.x@refs/pr/3', { kind: 'hf', repo: 'Org-1/Repo_2.x', revision: 'refs/pr/3' }],
    ['https://example.com/m', { kind: 'url', base: 'https://example.com/m/' }],
    ['http://127.0.0.1:9/m/', { kind: 'url', base: 'http://127.0.0.1:9/m/' }],
  ])('%s parses', (spec, want) => {
    expect(parseRemoteSpec(spec)).toEqual(want)
  })

  test.each([
    'hf:',
    'hf:org/',
    'hf:/repo',
    'hf:a/b/c',
    'hf:../etc',
    'hf:org/re..po',
    'hf:org/re--po',
    'hf:org/-repo',
    'hf:org/repo@',
    'hf:org/repo@../x',
    'hf:org/repo@a//b',
    'hf:org/repo with space',
    'http://example.com/m/',
    'https://user:pw@example.com/m/',
    'https://example.com/m/?sig=1',
    'https://example.com/m/#x',
    'https://',
  ])('%s is ERR_MODEL_SPEC', (spec) => {
    expect(() => parseRemoteSpec(spec)).toThrow(expect.objectContaining({ code: 'ERR_MODEL_SPEC' }))
  })
})

describe('hf: downloads', () => {
  test('lands in hub/<org>--<repo>/<commit> with refs/main, byte for byte; a second run fetches no file', async () => {
    const cache = freshCache()
    const dir = await download('hf:org/tiny', cache)
    const commit = (await readFile(join(cache, 'hub', 'org--tiny', 'refs', 'main'), 'utf8')).trim()
    expect(dir).toBe(join(cache, 'hub', 'org--tiny', commit))
    expect((await readdir(dir)).sort()).toEqual([...single.keys()].sort())
    for (const [name, bytes] of single)
      expect(sha256Hex(await readFile(join(dir, name))), name).toBe(sha256Hex(bytes))
    const before = hub.requests.length
    expect(await download('hf:org/tiny', cache)).toBe(dir)
    expect(hub.requests.slice(before).map((r) => r.url)).toEqual(['/api/models/org/tiny/revision/main'])
    // Offline, the cache alone answers.
    const offline = hub.requests.length
    expect(await download('hf:org/tiny', cache, { offline: true })).toBe(dir)
    expect(hub.requests.length).toBe(offline)
  })

  test('a sharded repo downloads the index and its shards, and loads', async () => {
    const dir = await download('hf:org/sharded', freshCache())
    for (const f of [SHARD1, SHARD2, 'model.safetensors.index.json']) {
      expect(sha256Hex(await readFile(join(dir, f))), f).toBe(sha256Hex(sharded.get(f) as Uint8Array))
    }
    const model = await loadModel(dir)
    try {
      expect(model.config.numLayers).toBe(4)
    } finally {
      await model.close()
    }
  })

  test('a connection dropped mid-file resumes with a Range request for the remainder only', async () => {
    const size = (sharded.get(SHARD2) as Uint8Array).byteLength
    hub.fault({ kind: 'drop-after', path: SHARD2, bytes: 100_000 })
    const lines: string[] = []
    const since = hub.requests.length
    await download('hf:org/sharded', freshCache(), { log: (l) => lines.push(l) })
    const gets = weightRequests(since).filter((r) => r.file === SHARD2 && r.url.startsWith('/cdn/'))
    expect(gets.map((r) => r.range)).toEqual([undefined, 'bytes=100000-'])
    expect(gets.map((r) => r.bytes)).toEqual([100_000, size - 100_000])
    expect(hub.bytesFor(SHARD2, since)).toBe(size)
    expect(lines.join('\n')).toMatch(
      /resuming org\/sharded\/model-00002-of-00002\.safetensors at byte 100000/,
    )
  })

  test('a stalled transfer times out and resumes', async () => {
    hub.fault({ kind: 'stall-after', path: SHARD1, bytes: 4096 })
    const since = hub.requests.length
    const lines: string[] = []
    await download('hf:org/sharded', freshCache(), { idleTimeoutMs: 300, log: (l) => lines.push(l) })
    expect(lines.join('\n')).toMatch(/no data for too long/)
    const gets = weightRequests(since).filter((r) => r.file === SHARD1 && r.url.startsWith('/cdn/'))
    expect(gets.map((r) => r.range)).toEqual([undefined, 'bytes=4096-'])
  })

  test('a part file left by an earlier run is continued, not refetched', async () => {
    const cache = freshCache()
    await download('hf:org/tiny', cache)
    const dir = (await readdir(join(cache, 'hub', 'org--tiny'))).find((d) => d !== 'refs') as string
    const weights = join(cache, 'hub', 'org--tiny', dir, 'model.safetensors')
    const whole = await readFile(weights)
    await rm(weights)
    await writeFile(`${weights}.part`, whole.subarray(0, 5000))
    const since = hub.requests.length
    await download('hf:org/tiny', cache)
    expect(weightRequests(since).map((r) => [r.range, r.bytes])).toEqual([
      ['bytes=5000-', whole.byteLength - 5000],
    ])
    expect(sha256Hex(await readFile(weights))).toBe(sha256Hex(whole))
  })

  test('content that does not match the sha256 deletes the partial and names the file', async () => {
    const cache = freshCache()
    hub.fault({ kind: 'corrupt', path: SHARD1 })
    await expect(download('hf:org/sharded', cache)).rejects.toMatchObject({
      code: 'ERR_MODEL_FILE_HASH',
      message: expect.stringMatching(
        /^org\/sharded\/model-00001-of-00002\.safetensors: sha256 [0-9a-f]{64} does not match/,
      ),
    })
    const dir = join(cache, 'hub', 'org--sharded', await commitOf(cache, 'org--sharded'))
    const left = await readdir(dir)
    expect(left.filter((f) => f.startsWith(SHARD1))).toEqual([])
    // The hub fixed, the next run succeeds.
    await download('hf:org/sharded', cache)
  })

  test('a plain file whose bytes do not match its git blob id is refused', async () => {
    hub.fault({ kind: 'corrupt', path: 'config.json' })
    await expect(download('hf:org/tiny', freshCache())).rejects.toMatchObject({
      code: 'ERR_MODEL_FILE_HASH',
      message: expect.stringMatching(/^org\/tiny\/config\.json: git blob id/),
    })
  })

  test('a file served from another commit than the listing pinned is ERR_DOWNLOAD_RESPONSE', async () => {
    hub.fault({ kind: 'wrong-commit', path: 'model.safetensors' })
    await expect(download('hf:org/tiny', freshCache())).rejects.toMatchObject({
      code: 'ERR_DOWNLOAD_RESPONSE',
      message: expect.stringContaining('the hub answered from ffff'),
    })
  })

  test('a private repo needs HF_TOKEN, which never reaches the CDN', async () => {
    await expect(download('hf:org/private', freshCache())).rejects.toMatchObject({
      code: 'ERR_DOWNLOAD_AUTH',
    })
    await expect(download('hf:org/private', freshCache(), { token: 'wrong' })).rejects.toMatchObject({
      code: 'ERR_DOWNLOAD_AUTH',
    })
    const since = hub.requests.length
    await download('hf:org/private', freshCache(), { token: 'hf_secret' })
    const reqs = hub.requests.slice(since)
    expect(
      reqs.filter((r) => !r.url.startsWith('/cdn/')).every((r) => r.authorization === 'Bearer hf_secret'),
    ).toBe(true)
    const cdn = reqs.filter((r) => r.url.startsWith('/cdn/'))
    expect(cdn.length).toBeGreaterThan(0)
    expect(cdn.every((r) => r.authorization === undefined)).toBe(true)
  })

  test.each([
    ['an unknown repo', 'hf:org/nope', 'ERR_DOWNLOAD_NOT_FOUND'],
    ['an unknown revision', 'hf:org/tiny@v9', 'ERR_DOWNLOAD_NOT_FOUND'],
  ])('%s is %s', async (_, spec, code) => {
    await expect(download(spec, freshCache())).rejects.toMatchObject({ code })
  })

  test('5xx answers are retried; past the retries they are ERR_DOWNLOAD_HTTP', async () => {
    hub.fault({ kind: 'status', path: 'model.safetensors', status: 503, times: 2 })
    await download('hf:org/tiny', freshCache())
    hub.fault({ kind: 'status', path: 'model.safetensors', status: 500, times: 10 })
    await expect(download('hf:org/tiny', freshCache(), { retries: 2 })).rejects.toMatchObject({
      code: 'ERR_DOWNLOAD_HTTP',
      status: 500,
    })
  })

  test.each([
    ['a redirect loop', { kind: 'redirect-loop' as const }],
    ['a redirect to ftp', { kind: 'redirect-to' as const, location: 'ftp://127.0.0.1/x' }],
    [
      'a redirect to plain http off loopback',
      { kind: 'redirect-to' as const, location: 'http://example.com/x' },
    ],
  ])('%s is ERR_DOWNLOAD_REDIRECT', async (_, fault) => {
    hub.fault({ ...fault, path: 'model.safetensors', times: 100 })
    await expect(download('hf:org/tiny', freshCache())).rejects.toMatchObject({
      code: 'ERR_DOWNLOAD_REDIRECT',
    })
  })

  test('another live process downloading the same file is ERR_DOWNLOAD_BUSY', async () => {
    const cache = freshCache()
    await download('hf:org/tiny', cache)
    const dir = join(cache, 'hub', 'org--tiny', await commitOf(cache, 'org--tiny'))
    await rm(join(dir, 'model.safetensors'))
    await writeFile(join(dir, 'model.safetensors.lock'), String(process.ppid))
    await expect(download('hf:org/tiny', cache)).rejects.toMatchObject({ code: 'ERR_DOWNLOAD_BUSY' })
    // A lock left by a process that is gone is taken over.
    await writeFile(join(dir, 'model.safetensors.lock'), '999999999')
    await download('hf:org/tiny', cache)
    expect((await stat(join(dir, 'model.safetensors'))).size).toBe(
      single.get('model.safetensors')?.byteLength,
    )
  })

  test('offline with nothing cached is ERR_DOWNLOAD_OFFLINE', async () => {
    await expect(download('hf:org/tiny', freshCache(), { offline: true })).rejects.toMatchObject({
      code: 'ERR_DOWNLOAD_OFFLINE',
    })
  })
})

describe('https:// directory URLs', () => {
  test('download, verify the SHA-256 ETag, and fetch no weights the second time', async () => {
    const cache = freshCache()
    const dir = await download(`${hub.url}/raw/org/sharded/`, cache)
    for (const [name, bytes] of sharded)
      expect(sha256Hex(await readFile(join(dir, name))), name).toBe(sha256Hex(bytes))
    const since = hub.requests.length
    expect(await download(`${hub.url}/raw/org/sharded`, cache)).toBe(dir)
    expect(weightRequests(since)).toEqual([])
  })

  test('a corrupted weights file is ERR_MODEL_FILE_HASH', async () => {
    hub.fault({ kind: 'corrupt', path: 'model.safetensors' })
    await expect(download(`${hub.url}/raw/org/tiny/`, freshCache())).rejects.toMatchObject({
      code: 'ERR_MODEL_FILE_HASH',
    })
  })

  test('a missing config.json is ERR_DOWNLOAD_NOT_FOUND', async () => {
    await expect(download(`${hub.url}/raw/org/none/`, freshCache())).rejects.toMatchObject({
      code: 'ERR_DOWNLOAD_NOT_FOUND',
    })
  })
})

async function commitOf(cache: string, repoDir: string): Promise<string> {
  return (await readFile(join(cache, 'hub', repoDir, 'refs', 'main'), 'utf8')).trim()
}
