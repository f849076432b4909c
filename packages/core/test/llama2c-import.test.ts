import {
  argmax,
  hfPermute,
  knownWeights,
  Llama2cRunner,
  type Llama2cWeights,
  llama2cGreedy,
  llama2cModelBin,
  readAll,
  relativeError,
  testDims,
  testVocab,
} from '@butterfly/testing'
import { describe, expect, test } from 'vitest'
import { ModelFileError } from '../src/errors.js'
import { metaToHfRows } from '../src/formats/import-source.js'
import { openLlama2cCheckpoint } from '../src/formats/llama2c-checkpoint.js'
import type { ModelConfig } from '../src/model/model-config.js'
import { ReferenceModel } from '../src/model/reference-model.js'
import { layerWeightNames } from '../src/model/weight-names.js'
import { bytesSource } from '../src/weights/byte-source.js'

const vocab = testVocab()
const dims = testDims(vocab.pieces.length)
const PROMPT = [1, 300, 290, 271, 305]

async function imported(w: Llama2cWeights, version: 0 | 1 = 0) {
  return openLlama2cCheckpoint(bytesSource('model.bin', llama2cModelBin(w, version)))
}

/** Logits of every prompt position from run.c's forward and from ReferenceModel on the import. */
async function compareLogits(w: Llama2cWeights, weights: Map<string, Float32Array>, config: ModelConfig) {
  const runner = new Llama2cRunner(w)
  const model = new ReferenceModel(config, weights)
  const cache = model.createCache()
  let worst = 0
  PROMPT.forEach((token, pos) => {
    const want = runner.forward(token, pos)
    const got = model.forward([token], cache)
    worst = Math.max(worst, relativeError(got, want))
  })
  return worst
}

describe('llama2.c checkpoints', () => {
  test.each([
    ['legacy, shared classifier', 0, true],
    ['legacy, separate classifier (negative vocab_size)', 0, false],
    ['version 1, shared classifier', 1, true],
    ['version 1, separate classifier', 1, false],
  ] as const)('%s: the import computes what run.c computes', async (_, version, shared) => {
    const w = knownWeights(dims, 11, shared)
    const source = await imported(w, version)
    expect(source.config).toMatchObject({
      architecture: 'llama',
      hiddenSize: 64,
      intermediateSize: 96,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 16,
      vocabSize: vocab.pieces.length,
      maxContext: 64,
      ropeTheta: 10_000,
      rmsNormEps: 1e-5,
      tieWordEmbeddings: shared,
      bosTokenId: 1,
      eosTokenId: 2,
    })
    const weights = await readAll(source)
    expect(await compareLogits(w, weights, source.config)).toBeLessThan(1e-5)
    // Greedy tokens over 24 steps: identical, not merely close.
    const model = new ReferenceModel(source.config, weights)
    const cache = model.createCache()
    const ours: number[] = []
    let logits = model.forward(PROMPT, cache)
    while (ours.length < 24) {
      const next = argmax(logits)
      ours.push(next)
      if (next === 2) break
      logits = model.forward([next], cache)
    }
    expect(ours).toEqual(llama2cGreedy(w, PROMPT, 24))
  })

  test('legacy and version 1 exports import to the same tensors', async () => {
    const w = knownWeights(dims, 12, false)
    const a = await readAll(await imported(w, 0))
    const b = await readAll(await imported(w, 1))
    expect([...a.keys()]).toEqual([...b.keys()])
    for (const [name, data] of a) expect(b.get(name), name).toEqual(data)
  })

  test('q/k come out in HF layout: equal to HF convert_llama_weights_to_hf permute', async () => {
    const w = knownWeights(dims, 13, true)
    const weights = await readAll(await imported(w))
    const n = layerWeightNames(1)
    expect(weights.get(n.q)).toEqual(hfPermute(w.wq[1] as Float32Array, 4, 64))
    expect(weights.get(n.k)).toEqual(hfPermute(w.wk[1] as Float32Array, 2, 64))
    expect(weights.get(n.v)).toEqual(w.wv[1])
  })

  test('without the permutation the logits are wrong, so the comparison can fail', async () => {
    const w = knownWeights(dims, 14, true)
    const source = await imported(w)
    const weights = await readAll(source)
    for (let l = 0; l < dims.nLayers; l++) {
      const n = layerWeightNames(l)
      weights.set(n.q, w.wq[l] as Float32Array)
      weights.set(n.k, w.wk[l] as Float32Array)
    }
    expect(await compareLogits(w, weights, source.config)).toBeGreaterThan(1e-3)
  })

  test('metaToHfRows refuses a buffer that is not heads x rows', () => {
    expect(() => metaToHfRows(new Uint8Array(10), 2, 4, 1)).toThrow(/cannot permute/)
  })
})

describe('corrupt llama2.c checkpoints', () => {
  const good = () => llama2cModelBin(knownWeights(dims, 15, false), 0)
  const goodV1 = () => llama2cModelBin(knownWeights(dims, 15, true), 1)
  const withField = (bytes: Uint8Array, index: number, value: number, at = 0) => {
    const out = bytes.slice()
    new DataView(out.buffer).setInt32(at + 4 * index, value, true)
    return out
  }
  const cases: Array<[string, () => Uint8Array, string, RegExp]> = [
    ['an empty file', () => new Uint8Array(0), 'ERR_MODEL_FILE_TRUNCATED', /shorter than the header/],
    ['half a header', () => good().subarray(0, 20), 'ERR_MODEL_FILE_TRUNCATED', /shorter than the header/],
    [
      'a truncated weight section',
      () => good().subarray(0, 5000),
      'ERR_MODEL_FILE_TRUNCATED',
      /implies \d+ bytes/,
    ],
    [
      'one float missing',
      () => good().subarray(0, good().byteLength - 4),
      'ERR_MODEL_FILE_TRUNCATED',
      /implies/,
    ],
    ['trailing bytes', () => new Uint8Array([...good(), 1, 2, 3, 4]), 'ERR_MODEL_FILE_HEADER', /implies/],
    ['a zero dim', () => withField(good(), 0, 0), 'ERR_MODEL_FILE_HEADER', /dim must be positive/],
    ['negative layers', () => withField(good(), 2, -3), 'ERR_MODEL_FILE_HEADER', /n_layers must be positive/],
    ['a zero vocab', () => withField(good(), 5, 0), 'ERR_MODEL_FILE_HEADER', /vocab_size must be positive/],
    [
      'heads not dividing dim',
      () => withField(good(), 3, 5),
      'ERR_MODEL_FILE_HEADER',
      /not divisible by n_heads/,
    ],
    ['kv heads not dividing heads', () => withField(good(), 4, 3), 'ERR_MODEL_FILE_HEADER', /n_kv_heads/],
    ['an odd head size', () => withField(withField(good(), 3, 64), 4, 64), 'ERR_MODEL_FILE_HEADER', /even/],
    ['a huge dim', () => withField(good(), 0, 1 << 30), 'ERR_MODEL_FILE_HEADER', /at most/],
    [
      'a huge vocab',
      () => withField(good(), 5, -(1 << 30)),
      'ERR_MODEL_FILE_HEADER',
      /vocab_size must be at most/,
    ],
    ['version 2 (int8)', () => withField(goodV1(), 1, 2), 'ERR_MODEL_FILE_VERSION', /version 2 \(int8 Q8_0/],
    ['version 7', () => withField(goodV1(), 1, 7), 'ERR_MODEL_FILE_VERSION', /version 7/],
    [
      'version 1 with negative vocab',
      () => withField(goodV1(), 5, -300, 8),
      'ERR_MODEL_FILE_HEADER',
      /positive in version 1/,
    ],
    ['a truncated version 1 file', () => goodV1().subarray(0, 300), 'ERR_MODEL_FILE_TRUNCATED', /implies/],
  ]
  test.each(cases)('%s', async (_, bytes, code, message) => {
    const err = await openLlama2cCheckpoint(bytesSource('bad.bin', bytes())).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ModelFileError)
    expect((err as ModelFileError).code).toBe(code)
    expect((err as Error).message).toMatch(/^bad\.bin/)
    expect((err as Error).message).toMatch(message)
  })

  test('a short read of a tensor is ERR_MODEL_FILE_TRUNCATED naming the tensor', async () => {
    const inner = bytesSource('shrinking.bin', good())
    // The file reports its full size but every read past the header comes back one byte short.
    const source = {
      ...inner,
      read: async (o: number, n: number) => (await inner.read(o, n)).subarray(0, o < 28 ? n : n - 1),
    }
    const opened = await openLlama2cCheckpoint(source)
    const err = await opened.tensors[2]?.read().catch((e: unknown) => e)
    expect((err as ModelFileError).code).toBe('ERR_MODEL_FILE_TRUNCATED')
    expect((err as Error).message).toMatch(/tensor model\.layers\.0\.self_attn\.q_proj\.weight: short read/)
  })
})
