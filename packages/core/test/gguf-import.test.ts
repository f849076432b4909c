import {
  GGML,
  type GgufMeta,
  ggufLlamaFile,
  hfPermute,
  knownWeights,
  llama2cModelBin,
  quantizeQ4_0,
  quantizeQ8_0,
  readAll,
  testDims,
  testVocab,
  tokenizerBin,
  writeGguf,
} from '@butterfly/testing'
import { describe, expect, test } from 'vitest'
import { ButterflyError } from '../src/errors.js'
import { openGgufModel } from '../src/formats/gguf-model.js'
import { readGguf } from '../src/formats/gguf-reader.js'
import { openLlama2cCheckpoint } from '../src/formats/llama2c-checkpoint.js'
import { llama2cTokenizerJson } from '../src/formats/llama2c-tokenizer.js'
import { layerWeightNames } from '../src/model/weight-names.js'
import { bytesSource } from '../src/weights/byte-source.js'
import { f16BitsToF32, fromFloat32, toFloat32 } from '../src/weights/float16.js'

const vocab = testVocab()
const dims = testDims(vocab.pieces.length)
const gguf = (bytes: Uint8Array) => openGgufModel(bytesSource('model.gguf', bytes))

describe('GGUF reader', () => {
  test('metadata of every type, alignment and ggml dim order', async () => {
    const meta: GgufMeta[] = [
      { key: 'a.u8', type: 'u8', value: 200 },
      { key: 'a.u32', type: 'u32', value: 4_000_000_000 },
      { key: 'a.i32', type: 'i32', value: -7 },
      { key: 'a.f32', type: 'f32', value: 0.5 },
      { key: 'a.f64', type: 'f64', value: 1e-300 },
      { key: 'a.u64', type: 'u64', value: 2 ** 40 },
      { key: 'a.bool', type: 'bool', value: true },
      { key: 'a.str', type: 'string', value: 'héllo 中文' },
      { key: 'a.strs', type: 'strings', value: ['x', '', '▁y'] },
      { key: 'a.f32s', type: 'f32s', value: [1, -2.5] },
      { key: 'general.alignment', type: 'u32', value: 64 },
    ]
    const data = new Uint8Array(3 * 32 * 4).map((_, i) => i)
    const file = await readGguf(
      bytesSource(
        'm.gguf',
        writeGguf(meta, [{ name: 't', dims: [32, 3], type: GGML.F32, data }], { alignment: 64 }),
      ),
    )
    expect(file.version).toBe(3)
    expect(Object.fromEntries(file.metadata)).toEqual({
      'a.u8': 200,
      'a.u32': 4_000_000_000,
      'a.i32': -7,
      'a.f32': 0.5,
      'a.f64': 1e-300,
      'a.u64': 2 ** 40,
      'a.bool': true,
      'a.str': 'héllo 中文',
      'a.strs': { type: 'string', values: ['x', '', '▁y'] },
      'a.f32s': { type: 'float32', values: [1, -2.5] },
      'general.alignment': 64,
    })
    const t = file.tensors.get('t')
    expect(t?.dims).toEqual([32, 3])
    expect(t?.type.name).toBe('F32')
    expect(file.dataStart % 64).toBe(0)
    expect(t?.begin).toBe(file.dataStart)
    expect(t?.end).toBe(file.dataStart + data.byteLength)
  })

  test('version 2 files read too', async () => {
    const file = await readGguf(bytesSource('m.gguf', writeGguf([], [], { version: 2 })))
    expect(file.version).toBe(2)
  })
})

describe('GGUF llama files', () => {
  test('F32: the same tensors, config and tokenizer as the llama2.c import of the same weights', async () => {
    for (const shared of [true, false]) {
      const w = knownWeights(dims, 21, shared)
      const fromGguf = await gguf(ggufLlamaFile(w, vocab, GGML.F32))
      const fromBin = await openLlama2cCheckpoint(bytesSource('model.bin', llama2cModelBin(w)))
      expect(fromGguf.config).toEqual(fromBin.config)
      expect(fromGguf.tensors.map((t) => [t.name, t.shape])).toEqual(
        fromBin.tensors.map((t) => [t.name, t.shape]),
      )
      for (let i = 0; i < fromBin.tensors.length; i++) {
        const a = await fromGguf.tensors[i]?.read()
        const b = await fromBin.tensors[i]?.read()
        expect(a?.dtype).toBe('F32')
        expect(a?.data, fromBin.tensors[i]?.name).toEqual(b?.data)
      }
      const tok = await llama2cTokenizerJson(
        bytesSource('t.bin', tokenizerBin(vocab.pieces, vocab.scores)),
        vocab.pieces.length,
      )
      expect(JSON.stringify(fromGguf.tokenizer?.json)).toBe(JSON.stringify(tok.json))
    }
  })

  test('F16 tensors pass through as F16, q/k rows permuted', async () => {
    const w = knownWeights(dims, 22, true)
    const weights = await readAll(await gguf(ggufLlamaFile(w, vocab, GGML.F16)))
    const half = (x: Float32Array) =>
      toFloat32({ dtype: 'F16', shape: [x.length], data: fromFloat32(x, 'F16') })
    const n = layerWeightNames(0)
    expect(weights.get(n.q)).toEqual(half(hfPermute(w.wq[0] as Float32Array, 4, 64)))
    expect(weights.get(n.k)).toEqual(half(hfPermute(w.wk[0] as Float32Array, 2, 64)))
    expect(weights.get(n.down)).toEqual(half(w.w2[0] as Float32Array))
    expect(weights.get('model.norm.weight')).toEqual(w.rmsFinal)
  })

  test.each([
    ['Q8_0', GGML.Q8_0, quantizeQ8_0, 34, (b: Uint8Array, j: number) => ((b[2 + j] as number) << 24) >> 24],
    [
      'Q4_0',
      GGML.Q4_0,
      quantizeQ4_0,
      18,
      (b: Uint8Array, j: number) => (j < 16 ? (b[2 + j] as number) & 15 : (b[2 + j - 16] as number) >> 4) - 8,
    ],
  ] as const)(
    '%s tensors dequantise exactly (q * d per block), then permute',
    async (_, type, quantize, blockBytes, q) => {
      const w = knownWeights(dims, 23, false)
      const weights = await readAll(await gguf(ggufLlamaFile(w, vocab, type)))
      // Dequantise the writer's blocks by hand: d is the block's float16, q its 32 integers.
      const byHand = (x: Float32Array) => {
        const bytes = quantize(x)
        return Float32Array.from({ length: x.length }, (_, i) => {
          const b = bytes.subarray(Math.floor(i / 32) * blockBytes)
          return f16BitsToF32((b[0] as number) | ((b[1] as number) << 8)) * q(b, i % 32)
        })
      }
      const n = layerWeightNames(1)
      expect(weights.get(n.q)).toEqual(hfPermute(byHand(w.wq[1] as Float32Array), 4, 64))
      expect(weights.get(n.k)).toEqual(hfPermute(byHand(w.wk[1] as Float32Array), 2, 64))
      expect(weights.get(n.gate)).toEqual(byHand(w.w1[1] as Float32Array))
      expect(weights.get('lm_head.weight')).toEqual(byHand(w.wcls as Float32Array))
      expect(weights.get(n.inputNorm)).toEqual(w.rmsAtt[1])
    },
  )
})

describe('corrupt and unsupported GGUF files', () => {
  const w = knownWeights(dims, 24, true)
  const good = () => ggufLlamaFile(w, vocab)
  const patch = (bytes: Uint8Array, at: number, write: (v: DataView) => void) => {
    const out = bytes.slice()
    write(new DataView(out.buffer, at))
    return out
  }
  /** A llama file with `extra` metadata added (later keys win in the writer's output order). */
  const withMeta = (extra: GgufMeta[], drop: string[] = []) => ggufLlamaFile(w, vocab, GGML.F32, extra, drop)
  const cases: Array<[string, () => Uint8Array, string, RegExp]> = [
    ['an empty file', () => new Uint8Array(0), 'ERR_MODEL_FILE_TRUNCATED', /shorter than a GGUF header/],
    ['a truncated header', () => good().subarray(0, 100), 'ERR_MODEL_FILE_TRUNCATED', /needs \d+ bytes/],
    [
      'a bad magic',
      () => patch(good(), 0, (v) => v.setUint32(0, 0x46554748, true)),
      'ERR_MODEL_FILE_HEADER',
      /bad magic/,
    ],
    [
      'version 1',
      () => patch(good(), 4, (v) => v.setUint32(0, 1, true)),
      'ERR_MODEL_FILE_VERSION',
      /GGUF version 1/,
    ],
    [
      'version 9',
      () => patch(good(), 4, (v) => v.setUint32(0, 9, true)),
      'ERR_MODEL_FILE_VERSION',
      /version 9/,
    ],
    [
      'a huge tensor count',
      () => patch(good(), 8, (v) => v.setBigUint64(0, 1n << 40n, true)),
      'ERR_MODEL_FILE_HEADER',
      /tensor count \d+ exceeds/,
    ],
    [
      'a huge key count',
      () => patch(good(), 16, (v) => v.setBigUint64(0, 1n << 62n, true)),
      'ERR_MODEL_FILE_HEADER',
      /key count \d+ exceeds/,
    ],
    [
      'a huge string length',
      () => patch(good(), 24, (v) => v.setBigUint64(0, 1n << 50n, true)),
      'ERR_MODEL_FILE_HEADER',
      /string length \d+ exceeds/,
    ],
    [
      'a string past the end',
      () => patch(good(), 24, (v) => v.setBigUint64(0, 1n << 20n, true)),
      'ERR_MODEL_FILE_TRUNCATED',
      /needs 1048576 bytes/,
    ],
    [
      'an unknown value type',
      () => patch(good(), 24 + 8 + 'general.architecture'.length, (v) => v.setUint32(0, 77, true)),
      'ERR_MODEL_FILE_HEADER',
      /unknown value type 77/,
    ],
    [
      'a tensor past the end of the file',
      () => good().subarray(0, good().byteLength - 8),
      'ERR_MODEL_FILE_TRUNCATED',
      /data ends at byte/,
    ],
    [
      'an alignment that is not a power of two',
      () => withMeta([{ key: 'general.alignment', type: 'u32', value: 48 }]),
      'ERR_MODEL_FILE_HEADER',
      /not a power of two/,
    ],
    [
      'a duplicated key',
      () => withMeta([{ key: 'general.name', type: 'string', value: 'again' }]),
      'ERR_MODEL_FILE_HEADER',
      /"general.name": key appears twice/,
    ],
    [
      'no architecture',
      () => withMeta([], ['general.architecture']),
      'ERR_MODEL_CONFIG',
      /general.architecture is missing/,
    ],
    [
      'an architecture we do not run',
      () =>
        withMeta(
          [{ key: 'general.architecture', type: 'string', value: 'gptneox' }],
          ['general.architecture'],
        ),
      'ERR_MODEL_CONFIG',
      /general.architecture "gptneox" is not supported \(supported: llama, qwen2, qwen3, phi3, gemma3\)/,
    ],
    [
      'a missing hyperparameter',
      () => withMeta([], ['llama.embedding_length']),
      'ERR_MODEL_CONFIG',
      /llama.embedding_length is missing/,
    ],
    [
      'a hyperparameter of the wrong type',
      () => withMeta([{ key: 'llama.block_count', type: 'string', value: '2' }], ['llama.block_count']),
      'ERR_MODEL_CONFIG',
      /llama.block_count must be a number/,
    ],
    [
      'a mixture of experts',
      () => withMeta([{ key: 'llama.expert_count', type: 'u32', value: 8 }]),
      'ERR_MODEL_CONFIG',
      /mixture-of-experts/,
    ],
    [
      'an unsupported RoPE scaling',
      () => withMeta([{ key: 'llama.rope.scaling.type', type: 'string', value: 'longrope' }]),
      'ERR_MODEL_CONFIG',
      /llama.rope.scaling.type: RoPE scaling \(longrope\) is not supported/,
    ],
    [
      'a GPT-2 tokenizer without merges',
      () =>
        withMeta([{ key: 'tokenizer.ggml.model', type: 'string', value: 'gpt2' }], ['tokenizer.ggml.model']),
      'ERR_TOKENIZER',
      /tokenizer\.ggml\.merges is missing/,
    ],
    [
      'more tokens than embedding rows',
      () =>
        withMeta(
          [{ key: 'tokenizer.ggml.tokens', type: 'strings', value: [...vocab.pieces, 'x'] }],
          ['tokenizer.ggml.tokens'],
        ),
      'ERR_TOKENIZER',
      /318 entries, the embedding has 317 rows/,
    ],
  ]
  test.each(cases)('%s', async (_, bytes, code, message) => {
    const err = await gguf(bytes()).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ButterflyError)
    expect((err as ButterflyError).code).toBe(code)
    expect((err as Error).message).toMatch(/model\.gguf/)
    expect((err as Error).message).toMatch(message)
  })

  const tensorCases: Array<
    [string, Array<{ name: string; dims: number[]; type: number; data: Uint8Array }>, string, RegExp]
  > = [
    [
      'an unknown ggml type',
      [{ name: 'x', dims: [32], type: 99, data: new Uint8Array(128) }],
      'ERR_MODEL_FILE_DTYPE',
      /tensor x.*unsupported ggml type 99/,
    ],
    [
      'an IQ type',
      [{ name: 'x', dims: [256], type: 16, data: new Uint8Array(66) }],
      'ERR_MODEL_FILE_DTYPE',
      /tensor x.*IQ2_XXS \(16\)/,
    ],
    [
      'zero dimensions',
      [{ name: 'x', dims: [], type: 0, data: new Uint8Array(4) }],
      'ERR_MODEL_FILE_HEADER',
      /tensor x.*n_dims 0/,
    ],
    [
      'five dimensions',
      [{ name: 'x', dims: [1, 1, 1, 1, 1], type: 0, data: new Uint8Array(4) }],
      'ERR_MODEL_FILE_HEADER',
      /n_dims 5/,
    ],
    [
      'a zero dimension',
      [{ name: 'x', dims: [4, 0], type: 0, data: new Uint8Array(0) }],
      'ERR_MODEL_FILE_SHAPE',
      /dimension 0 is invalid/,
    ],
    [
      'a row that is not whole blocks',
      [{ name: 'x', dims: [48], type: GGML.Q8_0, data: new Uint8Array(68) }],
      'ERR_MODEL_FILE_SHAPE',
      /48 is not a multiple of Q8_0's block of 32/,
    ],
    [
      'a duplicated tensor',
      [
        { name: 'x', dims: [8], type: 0, data: new Uint8Array(32) },
        { name: 'x', dims: [8], type: 0, data: new Uint8Array(32) },
      ],
      'ERR_MODEL_FILE_HEADER',
      /tensor x.*appears twice/,
    ],
  ]
  test.each(tensorCases)('a tensor with %s', async (_, tensors, code, message) => {
    const err = await readGguf(bytesSource('model.gguf', writeGguf([], tensors))).catch((e: unknown) => e)
    expect((err as ButterflyError).code).toBe(code)
    expect((err as Error).message).toMatch(message)
  })

  test('overlapping and misaligned tensor data are refused', async () => {
    const two = writeGguf(
      [],
      [
        { name: 'a', dims: [8], type: 0, data: new Uint8Array(32) },
        { name: 'b', dims: [8], type: 0, data: new Uint8Array(32) },
      ],
    )
    // tensor b's offset field is the last 8 bytes of its info, just before the padding
    const at = two.indexOf(0x62, 24 + 8 + 4 + 8 + 4 + 8 + 8) // the name "b"
    const overlap = two.slice()
    new DataView(overlap.buffer).setBigUint64(at + 1 + 4 + 8 + 4, 0n, true)
    await expect(readGguf(bytesSource('model.gguf', overlap))).rejects.toThrow(
      /tensor b\): data overlaps tensor a/,
    )
    const misaligned = two.slice()
    new DataView(misaligned.buffer).setBigUint64(at + 1 + 4 + 8 + 4, 8n, true)
    await expect(readGguf(bytesSource('model.gguf', misaligned))).rejects.toThrow(
      /offset 8 is not a multiple of the alignment 32/,
    )
  })

  test('a missing tensor, a wrong shape and an unsupported type name the tensor', async () => {
    const dropOutputNorm = ggufLlamaFile(w, vocab, GGML.F32, [], [], ['output_norm.weight'])
    await expect(gguf(dropOutputNorm)).rejects.toThrow(/\(tensor output_norm\.weight\): tensor not in file/)
    const q2k = ggufLlamaFile(w, vocab, GGML.F32, [], [], [], {
      'blk.1.attn_v.weight': { dims: [256, 8], type: 10, data: new Uint8Array(8 * 84) },
    })
    await expect(gguf(q2k)).rejects.toThrow(
      /\(tensor blk\.1\.attn_v\.weight\): ggml type Q2_K is not supported/,
    )
    const wrongShape = ggufLlamaFile(w, vocab, GGML.F32, [], [], [], {
      'blk.0.ffn_up.weight': { dims: [64, 95], type: 0, data: new Uint8Array(64 * 95 * 4) },
    })
    await expect(gguf(wrongShape)).rejects.toThrow(
      /\(tensor blk\.0\.ffn_up\.weight\): expected shape \[96, 64\], file has \[95, 64\]/,
    )
  })
})
