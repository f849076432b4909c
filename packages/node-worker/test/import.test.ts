import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  encodeSafetensors,
  expectedWeightShapes,
  ReferenceModel,
  readDequantized,
  SafetensorsReader,
  toFloat32,
} from '@butterfly/core'
import { createNodeBackend, FileSource, loadModel } from '@butterfly/node-platform'
import {
  argmax,
  GGML,
  ggufLlamaFile,
  hfConfigJson,
  hfTensors,
  knownWeights,
  Llama2cRunner,
  Llama2cTokenizerRef,
  llama2cGreedy,
  llama2cModelBin,
  relativeError,
  testDims,
  testVocab,
  tokenizerBin,
} from '@butterfly/testing'
import { type CliRun, runCli, WORKER_BIN } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'

// These run the built CLI (`npm test` compiles first) as real processes.
const vocab = testVocab()
const dims = testDims(vocab.pieces.length)
const weights = knownWeights(dims, 41, false)
const tokenizerRef = new Llama2cTokenizerRef(vocab.pieces, vocab.scores)
let root: string

const cli = (args: readonly string[]): Promise<CliRun> =>
  runCli(WORKER_BIN, args, { env: { BUTTERFLY_CACHE_DIR: join(root, 'cache') } })

async function importOk(args: string[]): Promise<string> {
  const run = await cli(['import', ...args])
  expect(run.stderr).toBe('')
  expect(run.code).toBe(0)
  expect(run.stdout).toMatch(/^imported /)
  return run.stdout
}

async function generateIds(model: string, prompt: string, maxTokens = 24): Promise<number[]> {
  const run = await cli([
    'generate',
    '--model',
    model,
    '--prompt',
    prompt,
    '--max-tokens',
    String(maxTokens),
    '--ids',
  ])
  expect(run.stderr).toBe('')
  expect(run.code).toBe(0)
  return run.stdout.trim() === '' ? [] : run.stdout.trim().split(' ').map(Number)
}

const p = (...parts: string[]) => join(root, ...parts)

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'bf-import-'))
  await writeFile(p('model.bin'), llama2cModelBin(weights))
  await writeFile(p('tokenizer.bin'), tokenizerBin(vocab.pieces, vocab.scores))
  await writeFile(p('model.gguf'), ggufLlamaFile(weights, vocab, GGML.F32))
  await writeFile(p('model-q8.gguf'), ggufLlamaFile(weights, vocab, GGML.Q8_0))
  await writeFile(p('model-q4.gguf'), ggufLlamaFile(weights, vocab, GGML.Q4_0))
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

describe('butterfly-worker import', () => {
  test('llama2.c: generate gives exactly run.c greedy tokens; logits match its forward', async () => {
    await importOk([p('model.bin'), '--tokenizer', p('tokenizer.bin'), '--out', p('from-bin')])
    for (const prompt of ['hello world', 'the 中文 😀']) {
      const want = llama2cGreedy(weights, tokenizerRef.encode(prompt, true), 24)
      expect(await generateIds(p('from-bin'), prompt)).toEqual(want)
    }
    // An empty prompt starts from BOS, as run.c does.
    expect(await generateIds(p('from-bin'), '')).toEqual(llama2cGreedy(weights, [1], 24))

    // The engine's full logits at every prompt position, against run.c's forward.
    const model = await loadModel(p('from-bin'))
    const prompt = tokenizerRef.encode('hello the world', true)
    const backend = createNodeBackend({ threads: 1 })
    const stage = await backend.createStage(
      { config: model.config, layerStart: 0, layerEnd: model.config.numLayers, emitLogits: true },
      model.weights,
    )
    try {
      const runner = new Llama2cRunner(weights)
      for (let pos = 0; pos < prompt.length; pos++) {
        const out = await stage.step('g', { tokens: [prompt[pos] as number], seqLen: 1, startPos: pos })
        const want = runner.forward(prompt[pos] as number, pos)
        expect(relativeError(out.logits as Float32Array, want)).toBeLessThan(1e-4)
        expect(argmax(out.logits as Float32Array)).toBe(argmax(want))
      }
    } finally {
      await stage.dispose()
      await model.close()
    }
  })

  test('the same weights as a sharded HF directory and as GGUF F32 import to the same file and tokens', async () => {
    // A Hugging Face directory: two shards with an index, and the tokenizer the llama2.c import wrote.
    const hf = p('hf-src')
    await mkdir(hf)
    const tensors = hfTensors(weights)
    await writeFile(join(hf, 'config.json'), JSON.stringify(hfConfigJson(dims, false)))
    await writeFile(join(hf, 'model-00001-of-00002.safetensors'), encodeSafetensors(tensors.slice(0, 10)))
    await writeFile(join(hf, 'model-00002-of-00002.safetensors'), encodeSafetensors(tensors.slice(10)))
    const weightMap = Object.fromEntries(
      tensors.map((t, i) => [t.name, `model-0000${i < 10 ? 1 : 2}-of-00002.safetensors`]),
    )
    await writeFile(
      join(hf, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    )
    await writeFile(join(hf, 'tokenizer.json'), await readFile(p('from-bin', 'tokenizer.json')))
    await writeFile(join(hf, 'tokenizer_config.json'), await readFile(p('from-bin', 'tokenizer_config.json')))

    await importOk([hf, '--out', p('from-hf')])
    await importOk([p('model.gguf'), '--out', p('from-gguf')])
    if (!(await stat(p('from-bin')).catch(() => undefined))) {
      await importOk([p('model.bin'), '--tokenizer', p('tokenizer.bin'), '--out', p('from-bin')])
    }
    const bin = await readFile(p('from-bin', 'model.safetensors'))
    expect((await readFile(p('from-hf', 'model.safetensors'))).equals(bin)).toBe(true)
    expect((await readFile(p('from-gguf', 'model.safetensors'))).equals(bin)).toBe(true)
    expect(await readFile(p('from-gguf', 'tokenizer.json'), 'utf8')).toBe(
      await readFile(p('from-bin', 'tokenizer.json'), 'utf8'),
    )
    const want = await generateIds(p('from-bin'), 'and the world')
    expect(await generateIds(p('from-hf'), 'and the world')).toEqual(want)
    expect(await generateIds(p('from-gguf'), 'and the world')).toEqual(want)
  })

  test.each([
    ['Q8_0', 'model-q8.gguf'],
    ['Q4_0', 'model-q4.gguf'],
  ])('GGUF %s: generate equals the reference forward over the dequantised weights', async (_, file) => {
    const out = p(`from-${file}`)
    await importOk([p(file), '--out', out])
    const model = await loadModel(out)
    const loaded = new Map<string, Float32Array>()
    for (const [name, shape] of expectedWeightShapes(model.config))
      loaded.set(name, Float32Array.from(toFloat32(await model.weights(name, shape))))
    await model.close()
    const reference = new ReferenceModel(model.config, loaded)
    const cache = reference.createCache()
    const prompt = tokenizerRef.encode('hello world', true)
    const want: number[] = []
    let logits = reference.forward(prompt, cache)
    while (want.length < 16) {
      want.push(argmax(logits))
      if (want.at(-1) === 2) break
      logits = reference.forward([want.at(-1) as number], cache)
    }
    expect(await generateIds(out, 'hello world', 16)).toEqual(want)
  })

  test('--dtype fp16 stores F16 weights that generate', async () => {
    await importOk([p('model.gguf'), '--out', p('fp16'), '--dtype', 'fp16'])
    const source = await FileSource.open(p('fp16', 'model.safetensors'))
    const reader = await SafetensorsReader.open(source)
    expect(new Set([...reader.tensors.values()].map((t) => t.dtype))).toEqual(new Set(['F16']))
    await source.close()
    expect(await generateIds(p('fp16'), 'the', 8)).toHaveLength(8)
  })

  test('--dtype int4 stores MatMulNBits blocks whose tokens equal the reference over the dequantised weights', async () => {
    const out = p('int4')
    await importOk([p('model.bin'), '--tokenizer', p('tokenizer.bin'), '--out', out, '--dtype', 'int4'])
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>
    expect(config.quantization_config).toMatchObject({ bits: 4, block_size: 32 })
    const model = await loadModel(out)
    const source = await FileSource.open(join(out, 'model.safetensors'))
    const stored = [...(await SafetensorsReader.open(source)).tensors.values()]
    await source.close()
    expect(stored.find((t) => t.name === 'model.layers.0.mlp.up_proj.weight.qweight')?.dtype).toBe('U8')
    expect(stored.find((t) => t.name === 'model.embed_tokens.weight')?.dtype).toBe('F16')
    const loaded = new Map<string, Float32Array>()
    for (const [name, shape] of expectedWeightShapes(model.config))
      loaded.set(name, await readDequantized(model.config, model.weights, name, shape))
    await model.close()
    const reference = new ReferenceModel(model.config, loaded)
    const cache = reference.createCache()
    const want: number[] = []
    let logits = reference.forward(tokenizerRef.encode('hello world', true), cache)
    while (want.length < 16) {
      want.push(argmax(logits))
      if (want.at(-1) === 2) break
      logits = reference.forward([want.at(-1) as number], cache)
    }
    expect(await generateIds(out, 'hello world', 16)).toEqual(want)
  })

  test('--force replaces an earlier import; without it the output is refused', async () => {
    await importOk([p('model.gguf'), '--out', p('again')])
    const refused = await cli(['import', p('model.gguf'), '--out', p('again')])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/error \[ERR_IMPORT_OUTPUT\]: --out .*again already exists; pass --force/)
    await importOk([p('model.bin'), '--tokenizer', p('tokenizer.bin'), '--out', p('again'), '--force'])
  })
})

describe('butterfly-worker import refuses bad input clearly', () => {
  const write = async (name: string, bytes: Uint8Array | string) => {
    await writeFile(p(name), bytes)
    return p(name)
  }
  const cases: Array<[string, () => Promise<string[]>, number, RegExp]> = [
    [
      'a missing source',
      async () => [p('nope.bin'), '--tokenizer', p('tokenizer.bin')],
      1,
      /ERR_MODEL_NOT_FOUND\]: .*nope\.bin does not exist/,
    ],
    [
      'llama2.c without --tokenizer',
      async () => [p('model.bin')],
      2,
      /ERR_CLI_USAGE\]: a llama2\.c checkpoint needs --tokenizer/,
    ],
    [
      'a truncated llama2.c file',
      async () => [
        await write('short.bin', llama2cModelBin(weights).subarray(0, 9000)),
        '--tokenizer',
        p('tokenizer.bin'),
      ],
      1,
      /ERR_MODEL_FILE_TRUNCATED\]: .*short\.bin: the header .* implies/,
    ],
    [
      'a tokenizer.bin for another vocabulary',
      async () => [
        p('model.bin'),
        '--tokenizer',
        await write('small-tok.bin', tokenizerBin(vocab.pieces.slice(0, 300), vocab.scores)),
      ],
      1,
      /ERR_TOKENIZER\]: .*small-tok\.bin: token 300 of 317/,
    ],
    [
      'a truncated GGUF',
      async () => [await write('short.gguf', (await readFile(p('model.gguf'))).subarray(0, 3000))],
      1,
      /ERR_MODEL_FILE_TRUNCATED\]: .*short\.gguf/,
    ],
    [
      'a .gguf that is not GGUF',
      async () => [await write('fake.gguf', 'not a gguf file at all, just text')],
      1,
      /ERR_MODEL_FILE_HEADER\]: .*fake\.gguf: GGUF header: bad magic/,
    ],
    [
      'a GGUF of another architecture',
      async () => [
        await write(
          'mamba.gguf',
          ggufLlamaFile(
            weights,
            vocab,
            GGML.F32,
            [{ key: 'general.architecture', type: 'string', value: 'mamba' }],
            ['general.architecture'],
          ),
        ),
      ],
      1,
      /ERR_MODEL_CONFIG\]: .*"mamba" is not supported \(supported: llama, qwen2, qwen3, phi3, gemma3\)/,
    ],
    [
      'an HF directory without weights',
      async () => {
        await mkdir(p('hf-empty'), { recursive: true })
        await writeFile(p('hf-empty', 'config.json'), JSON.stringify(hfConfigJson(dims, false)))
        return [p('hf-empty')]
      },
      1,
      /ERR_MODEL_NOT_FOUND\]: .*neither model\.safetensors nor/,
    ],
    [
      'an HF index escaping the directory',
      async () => {
        await mkdir(p('hf-escape'), { recursive: true })
        await writeFile(p('hf-escape', 'config.json'), JSON.stringify(hfConfigJson(dims, false)))
        await writeFile(
          p('hf-escape', 'model.safetensors.index.json'),
          JSON.stringify({ weight_map: { 'model.norm.weight': '../model.safetensors' } }),
        )
        return [p('hf-escape')]
      },
      1,
      /ERR_MODEL_INDEX\]: .*not a plain \*\.safetensors file name/,
    ],
    [
      'an unsupported HF architecture',
      async () => {
        await mkdir(p('hf-gpt2'), { recursive: true })
        await writeFile(
          p('hf-gpt2', 'config.json'),
          JSON.stringify({ ...hfConfigJson(dims, false), model_type: 'gpt2' }),
        )
        return [p('hf-gpt2')]
      },
      1,
      /ERR_MODEL_CONFIG\]: .*model_type "gpt2" is unsupported/,
    ],
    ['an unknown --dtype', async () => [p('model.gguf'), '--dtype', 'fp8'], 2, /ERR_CLI_USAGE\].*--dtype/],
  ]
  test.each(cases)('%s', async (_, args, code, message) => {
    const run = await cli(['import', ...(await args()), '--out', p('never')])
    expect(run.code).toBe(code)
    expect(run.stderr).toMatch(message)
    expect(run.stderr).not.toMatch(/\n\s+at /)
    expect(await stat(p('never')).catch(() => 'absent')).toBe('absent')
  })

  test('a file that is not a directory blocks --out even with --force', async () => {
    const run = await cli(['import', p('model.gguf'), '--out', await write('a-file', 'x'), '--force'])
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/ERR_IMPORT_OUTPUT\]: --out .*a-file exists and is not a directory/)
  })
})
