import { createHash } from 'node:crypto'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  bytesSource,
  EMBED_TOKENS,
  encodeSafetensors,
  openRemoteModel,
  SafetensorsReader,
  type TensorCache,
} from '@butterfly/core'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { indexModelDir, type ModelManifest } from '../src/control/model-index.js'
import { parseRange } from '../src/http/http-range.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer, tinyModel } from './helpers.js'

// Waits are event-driven: a broken server shows up as a fast timeout, not a two-minute one.
vi.setConfig({ testTimeout: 15_000 })

let model: Awaited<ReturnType<typeof tinyModel>>
let server: SignalServer
let weights: Buffer
let size: number
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

beforeAll(async () => {
  model = await tinyModel()
  server = await startServer({ meshes: [{ name: 'default', modelDir: model.dir }] })
  weights = await readFile(join(model.dir, 'model.safetensors'))
  size = weights.byteLength
})
afterAll(async () => {
  await server.close()
  await model.cleanup()
})

const url = (path: string) => `${server.url}/models/default/${path}`

describe('manifest.json', () => {
  test('lists every file and tensor with hashes that match the bytes served', async () => {
    const res = await fetch(url('manifest.json'))
    expect(res.status).toBe(200)
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    const manifest = (await res.json()) as ModelManifest
    expect(manifest.modelId).toBe(server.meshes.get('default')?.modelId)
    expect(Object.keys(manifest.files).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json'])
    for (const [file, digest] of Object.entries(manifest.files)) {
      const body = new Uint8Array(await (await fetch(url(file))).arrayBuffer())
      expect(body.byteLength, file).toBe(digest.size)
      expect(sha256(body), file).toBe(digest.sha256)
    }
    const reader = await SafetensorsReader.open(bytesSource('w', new Uint8Array(weights)))
    expect(Object.keys(manifest.tensors).sort()).toEqual([...reader.tensors.keys()].sort())
    for (const [name, t] of Object.entries(manifest.tensors)) {
      const info = reader.info(name)
      expect([t.begin, t.end], name).toEqual([info.begin, info.end])
      // Fetch each tensor alone by range, as a peer does, and check it against the manifest.
      const res = await fetch(url('model.safetensors'), {
        headers: { range: `bytes=${t.begin}-${t.end - 1}` },
      })
      expect(res.status).toBe(206)
      expect(sha256(new Uint8Array(await res.arrayBuffer())), name).toBe(t.sha256)
    }
  })

  test('tensor hashes survive empty tensors and chunk boundaries', async () => {
    const dir = await mkdtemp(join(model.dir, '..', 'odd-'))
    try {
      await cp(model.dir, dir, { recursive: true })
      const big = new Uint8Array(3 * 2 ** 20 + 5).map((_, i) => (i * 31) & 0xff) // spans read chunks
      const tensors = [
        { name: 'a', dtype: 'U8' as const, shape: [big.byteLength], data: big },
        { name: 'empty', dtype: 'F32' as const, shape: [0], data: new Uint8Array(0) },
        { name: 'b', dtype: 'U8' as const, shape: [3], data: new Uint8Array([1, 2, 3]) },
      ]
      const bytes = encodeSafetensors(tensors)
      await writeFile(join(dir, 'model.safetensors'), bytes)
      const index = await indexModelDir(dir, 'odd')
      expect(index.manifest.tensors.a?.sha256).toBe(sha256(big))
      expect(index.manifest.tensors.empty?.sha256).toBe(sha256(new Uint8Array(0)))
      expect(index.manifest.tensors.b?.sha256).toBe(sha256(new Uint8Array([1, 2, 3])))
      expect(index.manifest.files['model.safetensors']?.sha256).toBe(sha256(bytes))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('Range requests on model.safetensors', () => {
  // [header, status, first byte, last byte (inclusive)]; -1 means "size - n" etc. resolved below.
  const cases: Array<[string, string | undefined, number, ((n: number) => [number, number]) | undefined]> = [
    ['no Range', undefined, 200, (n) => [0, n - 1]],
    ['bytes=a-b', 'bytes=100-199', 206, () => [100, 199]],
    ['bytes=0-0', 'bytes=0-0', 206, () => [0, 0]],
    ['bytes=a-', 'bytes=1000-', 206, (n) => [1000, n - 1]],
    ['bytes=-n', 'bytes=-500', 206, (n) => [n - 500, n - 1]],
    ['suffix longer than the file', 'bytes=-99999999', 206, (n) => [0, n - 1]],
    ['last byte past the end', 'bytes=10-99999999', 206, (n) => [10, n - 1]],
    ['the last byte alone', 'LAST', 206, (n) => [n - 1, n - 1]],
    ['uppercase unit', 'BYTES=5-9', 206, () => [5, 9]],
    ['first byte at the end', 'bytes=SIZE-', 416, undefined],
    ['first byte past the end', 'bytes=99999999-100000000', 416, undefined],
    ['suffix of zero', 'bytes=-0', 416, undefined],
    ['last before first (invalid: ignored)', 'bytes=9-5', 200, (n) => [0, n - 1]],
    ['several ranges (ignored)', 'bytes=0-1,4-5', 200, (n) => [0, n - 1]],
    ['another unit (ignored)', 'items=0-5', 200, (n) => [0, n - 1]],
    ['garbage (ignored)', 'bytes=abc', 200, (n) => [0, n - 1]],
    ['bare dash (ignored)', 'bytes=-', 200, (n) => [0, n - 1]],
    ['negative numbers (ignored)', 'bytes=-5-10', 200, (n) => [0, n - 1]],
  ]
  test.each(cases)('%s', async (_, header, status, span) => {
    const range = header?.replace('SIZE', String(size)).replace('LAST', `bytes=${size - 1}-`)
    const res = await fetch(url('model.safetensors'), range === undefined ? {} : { headers: { range } })
    expect(res.status).toBe(status)
    expect(res.headers.get('accept-ranges')).toBe('bytes')
    if (span === undefined) {
      expect(res.headers.get('content-range')).toBe(`bytes */${size}`)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('range_not_satisfiable')
      return
    }
    const [first, last] = span(size)
    const body = Buffer.from(await res.arrayBuffer())
    expect(body.equals(weights.subarray(first, last + 1))).toBe(true)
    expect(res.headers.get('content-length')).toBe(String(last - first + 1))
    expect(res.headers.get('content-range')).toBe(status === 206 ? `bytes ${first}-${last}/${size}` : null)
    expect(res.headers.get('etag')).toBe(`"${sha256(weights)}"`)
  })

  test('If-Range with a stale ETag sends the whole file', async () => {
    const res = await fetch(url('model.safetensors'), {
      headers: { range: 'bytes=0-9', 'if-range': '"old"' },
    })
    expect(res.status).toBe(200)
    expect(Buffer.from(await res.arrayBuffer()).equals(weights)).toBe(true)
    const fresh = await fetch(url('model.safetensors'), {
      headers: { range: 'bytes=0-9', 'if-range': `"${sha256(weights)}"` },
    })
    expect(fresh.status).toBe(206)
    expect((await fresh.arrayBuffer()).byteLength).toBe(10)
  })

  test('HEAD gives the headers without a body', async () => {
    const res = await fetch(url('model.safetensors'), { method: 'HEAD', headers: { range: 'bytes=0-99' } })
    expect(res.status).toBe(206)
    expect(res.headers.get('content-length')).toBe('100')
    expect((await res.arrayBuffer()).byteLength).toBe(0)
  })

  test('parseRange handles an empty file', () => {
    expect(parseRange('bytes=0-', 0)).toEqual({ kind: 'unsatisfiable' })
    expect(parseRange('bytes=-1', 0)).toEqual({ kind: 'unsatisfiable' })
    expect(parseRange(undefined, 0)).toEqual({ kind: 'full' })
  })
})

describe('openRemoteModel with a tensor cache', () => {
  /** A Map-backed cache that records what was asked of it. */
  function mapCache(): TensorCache & { store: Map<string, Uint8Array>; gets: number } {
    const store = new Map<string, Uint8Array>()
    return {
      store,
      gets: 0,
      async get(hash) {
        this.gets++
        return store.get(hash)
      },
      async put(hash, bytes) {
        store.set(hash, bytes.slice())
      },
    }
  }

  test('a miss downloads and keeps the tensor; a hit serves it; a damaged entry is refetched and replaced', async () => {
    const cache = mapCache()
    const first = await openRemoteModel(url(''), { cache })
    const shape = [first.config.vocabSize, first.config.hiddenSize]
    const fresh = await first.weights(EMBED_TOKENS, shape)
    const hash = sha256(fresh.data)
    expect(first.manifest.tensors[EMBED_TOKENS]?.sha256).toBe(hash)
    expect(sha256(cache.store.get(hash) as Uint8Array)).toBe(hash)

    // A hit: the network is not asked for the tensor's bytes.
    const entry = first.manifest.tensors[EMBED_TOKENS] as { begin: number; end: number }
    let tensorFetches = 0
    const realFetch = globalThis.fetch
    const spy = vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) => {
      if (new Headers(init?.headers).get('range') === `bytes=${entry.begin}-${entry.end - 1}`) tensorFetches++
      return realFetch(input, init)
    })
    try {
      const second = await openRemoteModel(url(''), { cache })
      expect(sha256((await second.weights(EMBED_TOKENS, shape)).data)).toBe(hash)
      expect(tensorFetches).toBe(0)

      // A planted entry of the right length but the wrong bytes is never used.
      const planted = (cache.store.get(hash) as Uint8Array).slice()
      planted[0] = (planted[0] as number) ^ 0xff
      cache.store.set(hash, planted)
      const third = await openRemoteModel(url(''), { cache })
      expect(sha256((await third.weights(EMBED_TOKENS, shape)).data)).toBe(hash)
      expect(tensorFetches).toBe(1)
      expect(sha256(cache.store.get(hash) as Uint8Array)).toBe(hash)
    } finally {
      spy.mockRestore()
    }
  })
})

describe('what is not served', () => {
  const missing: Array<[string, string, string]> = [
    ['an unknown mesh', '/models/nowhere/config.json', 'mesh_not_found'],
    ['a file outside the list', '/models/default/tokenizer_config.json', 'file_not_found'],
    ['an encoded traversal', '/models/default/..%2Fconfig.json', 'file_not_found'],
    ['an encoded traversal out of the dir', '/models/default/..%2F..%2F..%2Fetc%2Fpasswd', 'file_not_found'],
    ['a dot file', '/models/default/.', 'file_not_found'],
    ['a mesh named __proto__', '/models/__proto__/config.json', 'mesh_not_found'],
  ]
  test.each(missing)('%s is a JSON 404', async (_, path, code) => {
    const res = await fetch(`${server.url}${path}`)
    expect(res.status).toBe(404)
    const body = (await res.json()) as { error: { message: string; type: string; code: string } }
    expect(body.error).toMatchObject({ code, type: 'not_found_error' })
    expect(typeof body.error.message).toBe('string')
  })

  test('a plain traversal never leaves the routes', async () => {
    const res = await fetch(`${server.url}/models/default/../../../etc/passwd`)
    expect(res.status).toBe(404)
    expect(await res.text()).not.toContain('root:')
  })
})
