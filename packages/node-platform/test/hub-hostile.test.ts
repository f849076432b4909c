import { shardName, startHubFixture } from '@butterfly/testing/node'
import { afterAll, describe, expect, test, vi } from 'vitest'
import { type DownloadModelOptions, downloadModel } from '../src/hub/download-model.js'
import { parseRemoteSpec } from '../src/hub/model-spec.js'
import { loadModel } from '../src/models/model-store.js'

// Repositories that lie: bad indexes, oversized or invalid configs, missing weights. Each must
// fail with a clear error, before any weights are fetched where that is possible.
vi.setConfig({ testTimeout: 30_000 })

const { hub, single, sharded, freshCache, close } = await startHubFixture('bf-hub-hostile-')
afterAll(close)
const SHARD1 = shardName(0, 2)
const fast: DownloadModelOptions = { retryDelayMs: 5, idleTimeoutMs: 2000, headersTimeoutMs: 2000 }
const download = (spec: string, cache: string) =>
  downloadModel(parseRemoteSpec(spec), cache, { endpoint: hub.url, token: '', offline: false, ...fast })
const weightRequests = (since: number) =>
  hub.requests
    .slice(since)
    .filter((r) => r.file?.endsWith('.safetensors') && r.method === 'GET' && r.status !== 302)

describe('hostile repositories', () => {
  const withIndex = (index: unknown, drop: string[] = []) => {
    const files = new Map(sharded)
    for (const f of drop) files.delete(f)
    files.set('model.safetensors.index.json', new TextEncoder().encode(JSON.stringify(index)))
    return files
  }
  const realMap = () =>
    JSON.parse(new TextDecoder().decode(sharded.get('model.safetensors.index.json'))).weight_map as Record<
      string,
      string
    >
  let n = 0
  const repoWith = (files: Map<string, Uint8Array>) => {
    const name = `org/hostile${n++}`
    hub.addRepo(name, files)
    return `hf:${name}`
  }

  test.each([
    ['a shard name escaping the directory', () => ({ weight_map: { ...realMap(), x: '../x.safetensors' } })],
    ['a shard in a subdirectory', () => ({ weight_map: { ...realMap(), x: 'sub/x.safetensors' } })],
    ['a shard that is not safetensors', () => ({ weight_map: { ...realMap(), x: 'x.bin' } })],
    ['a shard name that is not a string', () => ({ weight_map: { ...realMap(), x: 7 } })],
    ['an empty weight_map', () => ({ weight_map: {} })],
    ['no weight_map', () => ({ metadata: {} })],
    ['an index that is an array', () => [1, 2]],
    [
      'a shard the repository lacks',
      () => ({ weight_map: { ...realMap(), x: 'model-00003-of-00003.safetensors' } }),
    ],
  ])('%s is ERR_MODEL_INDEX before any weights are fetched', async (_, index) => {
    const spec = repoWith(withIndex(index()))
    const since = hub.requests.length
    await expect(download(spec, freshCache())).rejects.toMatchObject({
      code: 'ERR_MODEL_INDEX',
      message: expect.stringContaining('model.safetensors.index.json'),
    })
    expect(weightRequests(since)).toEqual([])
  })

  test('an index that is not JSON is ERR_MODEL_INDEX', async () => {
    const files = new Map(sharded)
    files.set('model.safetensors.index.json', new TextEncoder().encode('{"weight_map": '))
    await expect(download(repoWith(files), freshCache())).rejects.toMatchObject({ code: 'ERR_MODEL_INDEX' })
  })

  test('an index that puts a tensor in the wrong shard fails at load, naming the tensor', async () => {
    const map = realMap()
    const dir = await download(
      repoWith(withIndex({ weight_map: { ...map, 'model.norm.weight': SHARD1 } })),
      freshCache(),
    )
    await expect(loadModel(dir)).rejects.toMatchObject({
      code: 'ERR_MODEL_INDEX',
      message: expect.stringMatching(/tensor model\.norm\.weight.*model-00001-of-00002/),
    })
  })

  test('an index that forgets a tensor the model needs fails at load', async () => {
    const { 'model.norm.weight': _, ...map } = realMap()
    const dir = await download(repoWith(withIndex({ weight_map: map })), freshCache())
    await expect(loadModel(dir)).rejects.toMatchObject({
      code: 'ERR_MODEL_TENSOR_MISSING',
      message: expect.stringContaining('model.norm.weight'),
    })
  })

  test('a config.json over the cap is refused before it is fetched', async () => {
    const files = new Map(single)
    files.set('config.json', new Uint8Array(2 * 2 ** 20).fill(0x20))
    const since = hub.requests.length
    await expect(download(repoWith(files), freshCache())).rejects.toMatchObject({ code: 'ERR_DOWNLOAD_SIZE' })
    expect(hub.requests.slice(since).filter((r) => r.file === 'config.json')).toEqual([])
  })

  test('a config.json the model loader rejects stops the download before the weights', async () => {
    const files = new Map(single)
    files.set('config.json', new TextEncoder().encode('{"hidden_size": "big"}'))
    const since = hub.requests.length
    await expect(download(repoWith(files), freshCache())).rejects.toMatchObject({ code: 'ERR_MODEL_CONFIG' })
    expect(weightRequests(since)).toEqual([])
  })

  test('a repo with no safetensors weights says so', async () => {
    const files = new Map(single)
    files.delete('model.safetensors')
    await expect(download(repoWith(files), freshCache())).rejects.toMatchObject({
      code: 'ERR_MODEL_NOT_FOUND',
      message: expect.stringMatching(/neither model\.safetensors nor model\.safetensors\.index\.json/),
    })
  })
})
