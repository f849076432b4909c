import { describe, expect, test } from 'vitest'
import { bytesSource } from '../src/weights/byte-source.js'
import { encodeSafetensors } from '../src/weights/safetensors.js'
import {
  isShardName,
  parseSafetensorsIndex,
  parseSafetensorsIndexBytes,
} from '../src/weights/safetensors-index.js'
import { ShardedSafetensors } from '../src/weights/sharded-safetensors.js'

const A = 'model-00001-of-00002.safetensors'
const B = 'model-00002-of-00002.safetensors'

describe('parseSafetensorsIndex', () => {
  test('maps tensors to shards and lists the shards in order', () => {
    const index = parseSafetensorsIndex(
      { metadata: { total_size: 1 }, weight_map: { x: A, y: B, z: A } },
      'i',
    )
    expect([...index.weightMap]).toEqual([
      ['x', A],
      ['y', B],
      ['z', A],
    ])
    expect(index.shards).toEqual([A, B])
  })

  test.each([
    ['not an object', 'x'],
    ['an array', []],
    ['null', null],
    ['no weight_map', { metadata: {} }],
    ['weight_map an array', { weight_map: [A] }],
    ['an empty weight_map', { weight_map: {} }],
    ['an empty tensor name', { weight_map: { '': A } }],
    ['a parent directory', { weight_map: { x: '../model.safetensors' } }],
    ['a dot-dot inside', { weight_map: { x: 'a..b.safetensors' } }],
    ['an absolute path', { weight_map: { x: '/etc/model.safetensors' } }],
    ['a subdirectory', { weight_map: { x: 'sub/model.safetensors' } }],
    ['a backslash', { weight_map: { x: 'sub\\model.safetensors' } }],
    ['a URL', { weight_map: { x: 'http://h/model.safetensors' } }],
    ['another extension', { weight_map: { x: 'pytorch_model.bin' } }],
    ['a hidden file', { weight_map: { x: '.model.safetensors' } }],
    ['a number', { weight_map: { x: 3 } }],
    ['a percent-encoded name', { weight_map: { x: '%2e%2e.safetensors' } }],
  ])('%s is ERR_MODEL_INDEX naming the file', (_, json) => {
    expect(() => parseSafetensorsIndex(json, 'dir/model.safetensors.index.json')).toThrow(
      expect.objectContaining({
        code: 'ERR_MODEL_INDEX',
        message: expect.stringContaining('dir/model.safetensors.index.json'),
      }),
    )
  })

  test('bytes over the cap are refused before decoding, and bad UTF-8 or JSON is ERR_MODEL_INDEX', () => {
    const big = new Uint8Array(32 * 2 ** 20 + 1)
    expect(() => parseSafetensorsIndexBytes(big, 'i')).toThrow(
      expect.objectContaining({ code: 'ERR_MODEL_INDEX' }),
    )
    for (const bytes of [new Uint8Array([0xff, 0xfe]), new TextEncoder().encode('{"weight_map": ')]) {
      expect(() => parseSafetensorsIndexBytes(bytes, 'i')).toThrow(
        expect.objectContaining({ code: 'ERR_MODEL_INDEX' }),
      )
    }
  })

  test('isShardName accepts Hugging Face shard names only', () => {
    expect(isShardName(A)).toBe(true)
    expect(isShardName('model.safetensors')).toBe(true)
    expect(isShardName('../x.safetensors')).toBe(false)
    expect(isShardName('x.safetensors\n')).toBe(false)
  })
})

describe('ShardedSafetensors', () => {
  const u8 = (...v: number[]) => ({ dtype: 'U8' as const, data: new Uint8Array(v) })
  const shards = new Map([
    [A, encodeSafetensors([{ name: 'x', shape: [2], ...u8(1, 2) }])],
    [B, encodeSafetensors([{ name: 'y', shape: [1], ...u8(9) }])],
  ])
  const opened: string[] = []
  const opener = async (file: string) => {
    opened.push(file)
    const bytes = shards.get(file)
    if (bytes === undefined) throw new Error(`no ${file}`)
    return bytesSource(file, bytes)
  }

  test('opens only the shard a read needs, once', async () => {
    opened.length = 0
    const w = ShardedSafetensors.sharded(
      parseSafetensorsIndex({ weight_map: { x: A, y: B } }, 'i'),
      opener,
      'i',
    )
    expect([...(await w.read('y')).data]).toEqual([9])
    expect([...(await w.read('y')).data]).toEqual([9])
    expect(opened).toEqual([B])
    expect((await w.info('x')).file).toBe(A)
  })

  test('a tensor the index lacks, or puts in the wrong shard, is a named error', async () => {
    const lying = ShardedSafetensors.sharded(
      parseSafetensorsIndex({ weight_map: { x: B } }, 'i'),
      opener,
      'idx',
    )
    await expect(lying.read('x')).rejects.toMatchObject({ code: 'ERR_MODEL_INDEX', tensor: 'x' })
    await expect(lying.verify()).rejects.toMatchObject({ code: 'ERR_MODEL_INDEX' })
    await expect(lying.read('nope')).rejects.toMatchObject({ code: 'ERR_MODEL_TENSOR_MISSING', file: 'idx' })
  })
})
