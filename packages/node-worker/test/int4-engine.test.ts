import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  buildStageGraph,
  encodeSafetensors,
  expectedWeightShapes,
  generate,
  isInt4Weight,
  type ModelConfig,
  type Pipeline,
  parseModelConfig,
  SafetensorsReader,
  syntheticStoredWeights,
  withInt4Quantization,
} from '@butterfly/core'
import {
  convertModelDir,
  createLocalPipeline,
  createNodeBackend,
  FileSource,
  loadModel,
  resolveModelDir,
} from '@butterfly/node-platform'
import {
  argmax,
  buildPipeline,
  pipelineGreedy,
  referenceFor,
  relativeError,
  runCli,
  stepLogits,
  syntheticConfig,
  WORKER_BIN,
} from '@butterfly/testing/node'
import onnxProto from 'onnx-proto'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'

// The int4 graph (MatMulNBits) must equal the float64 reference run on the DEQUANTISED weights:
// quantisation error is a property of the weights, never of the engine. ORT computes in fp32.
const REL_TOL = 1e-4
const STEPS = 32
const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]

let cache: string
beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'bf-int4-'))
})
afterAll(async () => {
  await rm(cache, { recursive: true, force: true })
})

async function greedyAgainstReference(config: ModelConfig, k: number): Promise<number[]> {
  const reference = referenceFor(config)
  const pipeline = await buildPipeline(config, k, { emitLogits: true })
  try {
    const kv = reference.createCache()
    let expected = reference.forward(PROMPT, kv)
    let actual = await stepLogits(pipeline, 'g', PROMPT, 0)
    const tokens: number[] = []
    for (let step = 0; step < STEPS; step++) {
      expect(relativeError(actual, expected)).toBeLessThan(REL_TOL)
      const token = argmax(actual)
      expect(token).toBe(argmax(expected))
      tokens.push(token)
      expected = reference.forward([token], kv)
      actual = await stepLogits(pipeline, 'g', [token], PROMPT.length + step)
    }
    return tokens
  } finally {
    await pipeline.dispose()
  }
}

const cases: Array<[string, ModelConfig]> = [
  // tiny: down_proj has K = 172, so its last block is padded.
  ['tiny', withInt4Quantization(syntheticConfig('tiny'))],
  // small: qwen2 biases after MatMulNBits, and an int4 untied LM head.
  ['small, int4 LM head', withInt4Quantization(syntheticConfig('small'), { lmHead: true })],
]
for (const [label, config] of cases) {
  describe(`int4 synthetic:${label}`, () => {
    const greedy = new Map<number, number[]>()
    for (const k of [1, 2, 4]) {
      test(`K=${k}: logits match the reference on dequantised weights`, async () => {
        greedy.set(k, await greedyAgainstReference(config, k))
      })
    }
    test('greedy tokens are identical for K = 1, 2, 4', () => {
      expect(greedy.size).toBe(3)
      for (const run of greedy.values()) expect(run).toEqual(greedy.get(1))
    })
  })
}

describe('int4 graph', () => {
  test('every projection is a MatMulNBits node; no float copy of them is stored', async () => {
    const config = withInt4Quantization(syntheticConfig('small'), { lmHead: true })
    const graph = await buildStageGraph(
      { config, layerStart: 0, layerEnd: config.numLayers },
      syntheticStoredWeights(config),
    )
    const model = onnxProto.onnx.ModelProto.decode(graph.bytes)
    const ops = (model.graph?.node ?? []).map((n) => `${n.domain ?? ''}:${n.opType}`)
    expect(ops.filter((o) => o === 'com.microsoft:MatMulNBits')).toHaveLength(7 * config.numLayers + 1)
    expect(ops).not.toContain(':MatMul')
    expect(ops).not.toContain(':Gemm')
    const node = model.graph?.node?.find((n) => n.opType === 'MatMulNBits')
    const attrs = Object.fromEntries((node?.attribute ?? []).map((a) => [a.name, Number(a.i)]))
    expect(attrs).toEqual({ K: 96, N: 96, bits: 4, block_size: 32 })
  })

  test('block size 64 also matches its reference', async () => {
    const config = withInt4Quantization(syntheticConfig('tiny'), { blockSize: 64 })
    const reference = referenceFor(config)
    const pipeline = await buildPipeline(config, 2, { emitLogits: true })
    try {
      const actual = await stepLogits(pipeline, 'g', PROMPT, 0)
      expect(relativeError(actual, reference.forward(PROMPT, reference.createCache()))).toBeLessThan(REL_TOL)
    } finally {
      await pipeline.dispose()
    }
  })

  test('int4 really quantises: its logits differ from fp32 far beyond rounding, its top token mostly agrees', async () => {
    const config = syntheticConfig('tiny')
    const fp32 = referenceFor(config)
    const int4 = await buildPipeline(withInt4Quantization(config), 1, { emitLogits: true })
    try {
      const actual = await stepLogits(int4, 'g', PROMPT, 0)
      const err = relativeError(actual, fp32.forward(PROMPT, fp32.createCache()))
      expect(err).toBeGreaterThan(1e-3)
      expect(err).toBeLessThan(0.5)
    } finally {
      await int4.dispose()
    }
  })
})

describe('synthetic:NAME:int4 on disk', () => {
  test('writes a marked config and a smaller valid safetensors file that loads and decodes like memory', async () => {
    const dir = await resolveModelDir('synthetic:tiny:int4', cache)
    const fp32Dir = await resolveModelDir('synthetic:tiny', cache)
    const config = parseModelConfig(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')))
    expect(config.quantization).toEqual({ method: 'int4', bits: 4, blockSize: 32, lmHead: false })
    const source = await FileSource.open(join(dir, 'model.safetensors'))
    try {
      const reader = await SafetensorsReader.open(source)
      const names = [...reader.tensors.keys()]
      expect(names.filter((n) => n.endsWith('.qweight'))).toHaveLength(7 * config.numLayers)
      expect(names.filter((n) => isInt4Weight(config, n))).toEqual([])
      for (const [name] of expectedWeightShapes(config)) {
        if (!isInt4Weight(config, name)) expect(reader.info(name).dtype).toBe('F16')
      }
    } finally {
      await source.close()
    }
    const size = async (d: string) => (await stat(join(d, 'model.safetensors'))).size
    expect((await size(dir)) / (await size(fp32Dir))).toBeLessThan(0.35)
    expect(await resolveModelDir('synthetic:tiny:int4', cache)).toBe(dir)

    // The file decodes exactly as the in-memory int4 weights (fp16 for the rest) do.
    const model = await loadModel(dir)
    const fromFile = await createLocalPipeline(model, createNodeBackend({ threads: 1 }), { stages: 2 })
    const inMemory = await buildPipeline(config, 2, { dtype: 'F16' })
    try {
      const run = async (p: Pipeline) => {
        const ids: number[] = []
        for await (const t of generate(p, { promptIds: PROMPT, maxTokens: 16, sampling: { temperature: 0 } }))
          ids.push(t.id)
        return ids
      }
      expect(await run(fromFile)).toEqual(await run(inMemory))
    } finally {
      await Promise.all([fromFile.dispose(), inMemory.dispose(), model.close()])
    }
  })

  test('converting a float model directory to int4 gives the synthetic int4 weights byte for byte', async () => {
    const out = join(cache, 'converted-int4')
    await convertModelDir(await resolveModelDir('synthetic:tiny', cache), out, 'int4')
    const int4Dir = await resolveModelDir('synthetic:tiny:int4', cache)
    expect(await readFile(join(out, 'model.safetensors'))).toEqual(
      await readFile(join(int4Dir, 'model.safetensors')),
    )
    const config = parseModelConfig(JSON.parse(await readFile(join(out, 'config.json'), 'utf8')))
    expect(config).toEqual(withInt4Quantization(syntheticConfig('tiny')))
    // An int4 directory has lost its float values: it cannot be a source.
    await expect(convertModelDir(out, join(cache, 'again'), 'F16')).rejects.toThrow(/already int4/)
  })

  test('a bad dtype suffix is refused', async () => {
    await expect(resolveModelDir('synthetic:tiny:int8', cache)).rejects.toThrow(
      /expected synthetic:NAME, synthetic:NAME:fp16 or synthetic:NAME:int4/,
    )
  })

  test('corrupt int4 entries fail with the file and tensor named', async () => {
    const config = withInt4Quantization(syntheticConfig('tiny'))
    const dir = await resolveModelDir('synthetic:tiny:int4', cache)
    const q = 'model.layers.0.self_attn.q_proj.weight'
    const provider = syntheticStoredWeights(config, 'F16')
    const entries = async (edit: (name: string) => 'drop' | 'I8' | 'keep') => {
      const out = []
      for (const [name, shape] of expectedWeightShapes(config)) {
        const stored = isInt4Weight(config, name) ? [`${name}.qweight`, `${name}.scales`] : [name]
        for (const s of stored) {
          const t = await provider(s, shape)
          const e = edit(s)
          if (e === 'drop') continue
          out.push({ name: s, ...t, ...(e === 'I8' ? { dtype: 'I8' as const } : {}) })
        }
      }
      return out
    }
    const bad: Array<[(n: string) => 'drop' | 'I8' | 'keep', string, RegExp]> = [
      [(n) => (n === `${q}.scales` ? 'drop' : 'keep'), 'ERR_MODEL_TENSOR_MISSING', /q_proj\.weight\.scales/],
      [
        (n) => (n === `${q}.qweight` ? 'I8' : 'keep'),
        'ERR_MODEL_FILE_DTYPE',
        /q_proj\.weight\.qweight.*expected dtype U8/,
      ],
    ]
    for (const [edit, code, message] of bad) {
      const broken = await mkdtemp(join(cache, 'broken-'))
      for (const f of ['config.json', 'tokenizer.json'])
        await writeFile(join(broken, f), await readFile(join(dir, f)))
      await writeFile(join(broken, 'model.safetensors'), encodeSafetensors(await entries(edit)))
      const model = await loadModel(broken)
      try {
        const err = await createLocalPipeline(model, createNodeBackend({ threads: 1 }), { stages: 1 }).catch(
          (e) => e,
        )
        expect(err).toMatchObject({ code })
        expect(String(err.message)).toMatch(message)
        expect(String(err.message)).toContain(join(broken, 'model.safetensors'))
      } finally {
        await model.close()
      }
    }
  })
})

describe('butterfly-worker generate --model synthetic:tiny:int4 (real processes)', () => {
  const cli = (args: readonly string[]) => runCli(WORKER_BIN, args, { env: { BUTTERFLY_CACHE_DIR: cache } })

  test('--stages 1 and 3 print the same tokens as the in-process int4 pipeline', async () => {
    const prompt = [1, ...new TextEncoder().encode('To be, or not').map((b) => b + 3)]
    const config = withInt4Quantization(syntheticConfig('tiny'))
    const expected = await pipelineGreedy(config, 1, prompt, 24, { dtype: 'F16' })
    for (const k of ['1', '3']) {
      const args = [
        'generate',
        '--model',
        'synthetic:tiny:int4',
        '--prompt',
        'To be, or not',
        '--max-tokens',
        '24',
      ]
      const run = await cli([...args, '--ids', '--stages', k])
      expect(run.stderr).toBe('')
      expect(run.code).toBe(0)
      expect(run.stdout.trim().split(' ').map(Number)).toEqual(expected)
    }
    const bad = await cli(['generate', '--model', 'synthetic:tiny:int3', '--prompt', 'x'])
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toMatch(/^butterfly-worker: error \[ERR_MODEL_CONFIG\]: bad model spec/)
  })
})
