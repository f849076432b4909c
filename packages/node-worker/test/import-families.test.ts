import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ModelConfig } from '@butterfly/core'
import { ggufModelFile, hfModelFiles, seededWeights } from '@butterfly/testing'
import { type CliRun, runCli, WORKER_BIN } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'

// `butterfly-worker import` of the new families, from a Hugging Face directory and from the GGUF
// llama.cpp's converter writes for the same weights: the two imports must generate the same
// tokens. (Agreement with llama.cpp itself is node-platform/test/llama-cpp-agreement.test.ts.)
const base = {
  vocabSize: 320,
  hiddenSize: 64,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 16,
  intermediateSize: 128,
  ropeTheta: 10_000,
  rmsNormEps: 1e-5,
  tieWordEmbeddings: false,
  maxContext: 128,
  attentionBias: false,
  bosTokenId: 1,
  eosTokenId: 2,
} as const satisfies Omit<ModelConfig, 'architecture'>

const FAMILIES: Array<[string, ModelConfig]> = [
  [
    'qwen3 (yarn)',
    {
      ...base,
      architecture: 'qwen3',
      headDim: 32,
      ropeScaling: {
        type: 'yarn',
        factor: 4,
        originalContext: 32,
        betaFast: 32,
        betaSlow: 1,
        attentionFactor: 1.125,
        truncate: true,
      },
    },
  ],
  [
    'phi3 (fused, partial rotary, window 8)',
    { ...base, architecture: 'phi3', rotaryDim: 8, slidingWindow: 8 },
  ],
  [
    'gemma3 (sliding + global)',
    {
      ...base,
      architecture: 'gemma3',
      numLayers: 6,
      tieWordEmbeddings: true,
      slidingWindow: 8,
      layerTypes: ['sliding', 'sliding', 'sliding', 'sliding', 'sliding', 'full'],
      localRopeTheta: 10_000,
    },
  ],
]

let root: string
const p = (...parts: string[]) => join(root, ...parts)
const cli = (args: readonly string[]): Promise<CliRun> =>
  runCli(WORKER_BIN, args, { env: { BUTTERFLY_CACHE_DIR: join(root, 'cache') } })
async function ok(args: string[]): Promise<string> {
  const run = await cli(args)
  expect(run.stderr).toBe('')
  expect(run.code).toBe(0)
  return run.stdout
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'bf-import-families-'))
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

describe('butterfly-worker import of each family: HF directory and GGUF agree', () => {
  test.each(FAMILIES)('%s', async (_, config) => {
    const name = config.architecture
    const weights = seededWeights(config, 21)
    await writeFile(p(`${name}.gguf`), ggufModelFile(config, weights))
    expect(await ok(['import', p(`${name}.gguf`), '--out', p(`${name}-from-gguf`)])).toMatch(/^imported /)
    const hf = p(`${name}-hf`)
    await mkdir(hf)
    for (const [file, bytes] of hfModelFiles(config, weights)) await writeFile(join(hf, file), bytes)
    expect(await ok(['import', hf, '--out', p(`${name}-from-hf`)])).toMatch(/^imported /)
    const fromHf = JSON.parse(await readFile(p(`${name}-from-hf`, 'config.json'), 'utf8'))
    const fromGguf = JSON.parse(await readFile(p(`${name}-from-gguf`, 'config.json'), 'utf8'))
    expect(fromGguf).toEqual(fromHf)
    expect(await readFile(p(`${name}-from-gguf`, 'tokenizer.json'), 'utf8')).toBe(
      await readFile(p(`${name}-from-hf`, 'tokenizer.json'), 'utf8'),
    )
    const ids = async (dir: string) =>
      (await ok(['generate', '--model', dir, '--prompt', 'hello world', '--max-tokens', '24', '--ids']))
        .trim()
        .split(' ')
        .map(Number)
    const want = await ids(p(`${name}-from-hf`))
    expect(want).toHaveLength(24)
    expect(await ids(p(`${name}-from-gguf`))).toEqual(want)
  })
})
