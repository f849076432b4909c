import {
  hfConfigJson,
  hfTensors,
  knownWeights,
  llama2cModelBin,
  testDims,
  testVocab,
} from '@butterfly/testing'
import { describe, expect, test } from 'vitest'
import { ModelFileError } from '../src/errors.js'
import { hfImportSource, locateTensors } from '../src/formats/hf-checkpoint.js'
import { openLlama2cCheckpoint } from '../src/formats/llama2c-checkpoint.js'
import { parseModelConfig } from '../src/model/parse-model-config.js'
import { bytesSource } from '../src/weights/byte-source.js'
import { encodeSafetensors, SafetensorsReader } from '../src/weights/safetensors.js'
import { parseSafetensorsIndex } from '../src/weights/safetensors-index.js'

const dims = testDims(testVocab().pieces.length)
const w = knownWeights(dims, 31, false)
const config = parseModelConfig(hfConfigJson(dims, false))
const tensors = hfTensors(w)

async function shards(parts: Array<[string, typeof tensors]>) {
  const readers = new Map<string, SafetensorsReader>()
  for (const [name, list] of parts)
    readers.set(name, await SafetensorsReader.open(bytesSource(name, encodeSafetensors(list))))
  return readers
}
const indexOf = (parts: Array<[string, typeof tensors]>) => ({
  metadata: { total_size: 0 },
  weight_map: Object.fromEntries(parts.flatMap(([file, list]) => list.map((t) => [t.name, file]))),
})

describe('Hugging Face checkpoints', () => {
  test('a sharded checkpoint imports to exactly the tensors of the llama2.c checkpoint', async () => {
    const parts: Array<[string, typeof tensors]> = [
      ['model-00001-of-00002.safetensors', tensors.slice(0, 7)],
      ['model-00002-of-00002.safetensors', tensors.slice(7)],
    ]
    const index = parseSafetensorsIndex(indexOf(parts))
    expect(index.shards).toEqual(parts.map(([f]) => f))
    const source = hfImportSource(config, locateTensors(config, await shards(parts), index))
    const reference = await openLlama2cCheckpoint(bytesSource('model.bin', llama2cModelBin(w)))
    expect(source.config).toEqual({ ...reference.config })
    expect(source.tensors.map((t) => t.name)).toEqual(reference.tensors.map((t) => t.name))
    for (let i = 0; i < source.tensors.length; i++) {
      expect((await source.tensors[i]?.read())?.data).toEqual((await reference.tensors[i]?.read())?.data)
    }
  })

  const indexCases: Array<[string, unknown, RegExp]> = [
    ['not an object', [1, 2], /is not a JSON object/],
    ['no weight_map', { metadata: {} }, /has no weight_map object/],
    ['an empty weight_map', { weight_map: {} }, /weight_map is empty/],
    [
      'a shard that is a number',
      { weight_map: { a: 3 } },
      /\(tensor a\): weight_map points to 3, which is not a plain/,
    ],
    [
      'a shard in a parent directory',
      { weight_map: { a: '../secret.safetensors' } },
      /not a plain \*\.safetensors file name/,
    ],
    ['an absolute shard path', { weight_map: { a: '/etc/passwd.safetensors' } }, /not a plain/],
    ['a Windows path', { weight_map: { a: 'C:\\x.safetensors' } }, /not a plain/],
    ['a hidden file', { weight_map: { a: '.safetensors' } }, /not a plain/],
    ['a shard that is not safetensors', { weight_map: { a: 'pytorch_model.bin' } }, /not a plain/],
  ]
  test.each(indexCases)('an index with %s is refused', (_, json, message) => {
    const err = (() => {
      try {
        parseSafetensorsIndex(json)
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(ModelFileError)
    expect((err as ModelFileError).code).toBe('ERR_MODEL_INDEX')
    expect((err as Error).message).toMatch(/^model\.safetensors\.index\.json/)
    expect((err as Error).message).toMatch(message)
  })

  test('a tensor missing from the weight map, from its shard, or in two shards', async () => {
    const parts: Array<[string, typeof tensors]> = [
      ['a.safetensors', tensors.slice(0, 7)],
      ['b.safetensors', tensors.slice(7)],
    ]
    const readers = await shards(parts)
    const index = indexOf(parts)
    const name = 'model.layers.1.mlp.up_proj.weight'
    const { [name]: _dropped, ...withoutUp } = index.weight_map
    const missingFromMap = parseSafetensorsIndex({ weight_map: withoutUp })
    expect(() => locateTensors(config, readers, missingFromMap)).toThrow(
      /\(tensor model\.layers\.1\.mlp\.up_proj\.weight\): tensor not in weight_map/,
    )
    const wrongShard = parseSafetensorsIndex({ weight_map: { ...index.weight_map, [name]: 'a.safetensors' } })
    expect(() => locateTensors(config, readers, wrongShard)).toThrow(
      /^a\.safetensors \(tensor model\.layers\.1\.mlp\.up_proj\.weight\): tensor not in file/,
    )
    const twice = await shards([
      ['a.safetensors', tensors.slice(0, 8)],
      ['b.safetensors', tensors.slice(7)],
    ])
    expect(() => locateTensors(config, twice, parseSafetensorsIndex(index))).toThrow(
      /in more than one shard \(a\.safetensors and b\.safetensors\)/,
    )
  })

  test('wrong dtypes and shapes name the shard and tensor', async () => {
    const bad = tensors.map((t) => (t.name === 'model.norm.weight' ? { ...t, dtype: 'I32' as const } : t))
    const r1 = new Map([
      [
        'model.safetensors',
        await SafetensorsReader.open(
          bytesSource('model.safetensors', encodeSafetensors(bad as typeof tensors)),
        ),
      ],
    ])
    expect(() => hfImportSource(config, locateTensors(config, r1))).toThrow(
      /model\.safetensors \(tensor model\.norm\.weight\): dtype I32 is not supported/,
    )
    const small = tensors.map((t) => (t.name === 'model.norm.weight' ? { ...t, shape: [32, 2] } : t))
    const r2 = new Map([
      [
        'model.safetensors',
        await SafetensorsReader.open(bytesSource('model.safetensors', encodeSafetensors(small))),
      ],
    ])
    expect(() => hfImportSource(config, locateTensors(config, r2))).toThrow(
      /expected shape \[64\], file has \[32, 2\]/,
    )
  })
})
