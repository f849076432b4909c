import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  expectedWeightShapes,
  openRemoteModel,
  SafetensorsReader,
  stageTensorNames,
  syntheticConfig,
} from '@butterfly/core'
import { FileSource, resolveModelDir } from '@butterfly/node-platform'
import { sha256Hex, shardName, writeShardedModel } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import type { ModelManifest } from '../src/control/model-index.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer } from './helpers.js'

// A sharded checkpoint (model.safetensors.index.json + two shards) served to mesh workers.
vi.setConfig({ testTimeout: 20_000 })

const config = syntheticConfig('tiny')
const SHARDS = [shardName(0, 2), shardName(1, 2)]
let work: string
let dir: string
let server: SignalServer
const served: Array<{ file: string; range: string | undefined }> = []

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bf-sharded-'))
  dir = join(work, 'sharded')
  await writeShardedModel(config, await resolveModelDir('synthetic:tiny', work), dir)
  server = await startServer({
    meshes: [{ name: 'default', modelDir: dir }],
    extend: ({ app }) => {
      app.addHook('onRequest', async (req) => {
        const file = /^\/models\/default\/([^/?]+)/.exec(req.url)?.[1]
        if (file !== undefined && req.method === 'GET') served.push({ file, range: req.headers.range })
      })
    },
  })
})
afterAll(async () => {
  await server.close()
  await rm(work, { recursive: true, force: true })
})

const url = (path: string) => `${server.url}/models/default/${path}`

describe('a sharded model directory', () => {
  test('the manifest lists the index and each shard, and every tensor with its shard', async () => {
    const manifest = (await (await fetch(url('manifest.json'))).json()) as ModelManifest
    expect(Object.keys(manifest.files).sort()).toEqual(
      ['config.json', 'model.safetensors.index.json', ...SHARDS, 'tokenizer.json'].sort(),
    )
    for (const [file, digest] of Object.entries(manifest.files)) {
      const body = new Uint8Array(await (await fetch(url(file))).arrayBuffer())
      expect(sha256Hex(body), file).toBe(digest.sha256)
    }
    expect(manifest.tensors['model.embed_tokens.weight']?.file).toBe(SHARDS[0])
    expect(manifest.tensors['model.norm.weight']?.file).toBe(SHARDS[1])
    for (const shard of SHARDS) {
      const source = await FileSource.open(join(dir, shard))
      const reader = await SafetensorsReader.open(source)
      const bytes = await readFile(join(dir, shard))
      for (const [name, info] of reader.tensors) {
        expect(manifest.tensors[name], name).toMatchObject({ file: shard, begin: info.begin, end: info.end })
        expect(sha256Hex(bytes.subarray(info.begin, info.end)), name).toBe(manifest.tensors[name]?.sha256)
      }
      await source.close()
    }
  })

  test('files outside the manifest are not served', async () => {
    for (const f of ['model.safetensors', '..%2Fconfig.json', 'model-00003-of-00002.safetensors']) {
      expect((await fetch(url(f))).status, f).toBe(404)
    }
  })

  test('a remote stage reads only the shards and byte ranges of its own tensors', async () => {
    served.length = 0
    const remote = await openRemoteModel(`${server.url}/models/default/`)
    const names = stageTensorNames(config, 0, 2) // embeddings and layers 0-1: all in the first shard
    for (const name of names) {
      const t = await remote.weights(name, expectedWeightShapes(config).get(name) ?? [])
      expect(t.data.byteLength).toBeGreaterThan(0)
    }
    const ranges = served.filter((s) => s.file !== 'manifest.json' && s.file !== 'config.json')
    expect(new Set(ranges.map((s) => s.file))).toEqual(new Set([SHARDS[0]]))
    const tensorRanges = names.map((n) => {
      const t = remote.manifest.tensors[n] as { begin: number; end: number }
      return `bytes=${t.begin}-${t.end - 1}`
    })
    // Two header reads (length, then JSON), then exactly one range per tensor.
    expect(ranges.slice(2).map((s) => s.range)).toEqual(tensorRanges)
    expect(ranges[0]?.range).toBe('bytes=0-7')
  })
})
