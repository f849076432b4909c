/**
 * Butterfly against llama.cpp on the same weights: for each family, a tiny seeded checkpoint is
 * written as llama.cpp's converter would write it (GGUF) and as a Hugging Face directory; greedy
 * tokens of llama.cpp (node-llama-cpp, CPU, F32 KV cache) must equal Butterfly's on
 * onnxruntime-node for K = 1 and 2 stages, and the HF and GGUF imports must give identical tokens.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  type ButterflyError,
  bytesSource,
  hfImportSource,
  type ImportSource,
  locateTensors,
  type ModelConfig,
  openGgufModel,
  parseModelConfig,
  SafetensorsReader,
  type WeightProvider,
} from '@butterfly/core'
import { ggufModelFile, hfModelFiles, mulberry32, seededWeights } from '@butterfly/testing'
import { type LlamaCpp, loadLlamaCpp, ortGreedy } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'

const STEPS = 32
/** Leading logits closer than this are a tie: rounding may pick either, so comparison stops there. */
const TIE = 1e-3
/**
 * 160 prompt tokens: long enough that the positions reach where RoPE scaling bends the
 * frequencies (a 5% error in one llama3 factor changes the tokens; at 8 tokens it did not).
 */
const random = mulberry32(77)
const PROMPT = [1, ...Array.from({ length: 159 }, () => 3 + Math.floor(random() * 300))]
const CONTEXT = 256

const base = {
  vocabSize: 320,
  hiddenSize: 64,
  numLayers: 3,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 16,
  intermediateSize: 172,
  ropeTheta: 10_000,
  rmsNormEps: 1e-5,
  tieWordEmbeddings: false,
  maxContext: 256,
  attentionBias: false,
  bosTokenId: 1,
  eosTokenId: 2,
} as const satisfies Omit<ModelConfig, 'architecture'>

/**
 * One checkpoint per family. Mistral and Phi-3 run without a sliding window: llama.cpp's llama
 * arch (which Mistral converts to) reads no window at all, and its phi3 arch disables SWA ("Phi
 * SWA is currently disabled", src/models/phi3.cpp), so a window there would test nothing shared.
 */
const FAMILIES: ReadonlyArray<{ name: string; config: ModelConfig }> = [
  {
    name: 'llama (llama3 rope scaling)',
    config: {
      ...base,
      architecture: 'llama',
      tieWordEmbeddings: true,
      ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 64 },
    },
  },
  { name: 'mistral (no window: llama.cpp has none for it)', config: { ...base, architecture: 'mistral' } },
  { name: 'qwen2 (q/k/v biases)', config: { ...base, architecture: 'qwen2', attentionBias: true } },
  {
    name: 'qwen3 (yarn, head_dim 32)',
    config: {
      ...base,
      architecture: 'qwen3',
      headDim: 32,
      ropeScaling: {
        type: 'yarn',
        factor: 4,
        originalContext: 64,
        betaFast: 32,
        betaSlow: 1,
        attentionFactor: 0.1 * Math.log(4) + 1,
        truncate: true,
      },
    },
  },
  {
    // LongRoPE: llama.cpp takes the long factors when its context (256) exceeds the original (48),
    // Butterfly when max_position_embeddings (256) does; both take them here.
    name: 'phi3 (partial rotary 0.5, LongRoPE, fused)',
    config: {
      ...base,
      architecture: 'phi3',
      rotaryDim: 8,
      ropeScaling: {
        type: 'longrope',
        shortFactor: [1, 1.1, 1.3, 1.6],
        longFactor: [1, 1.5, 3, 6],
        originalContext: 48,
        attentionFactor: Math.sqrt(1 + Math.log(256 / 48) / Math.log(48)),
      },
    },
  },
  {
    name: 'gemma3 (5 sliding + 1 global, window 8, global linear scaling 8 as in 4B+)',
    config: {
      ...base,
      architecture: 'gemma3',
      numLayers: 6,
      tieWordEmbeddings: true,
      ropeTheta: 1_000_000,
      localRopeTheta: 10_000,
      ropeScaling: { type: 'linear', factor: 8 },
      slidingWindow: 8,
      layerTypes: ['sliding', 'sliding', 'sliding', 'sliding', 'sliding', 'full'],
      rmsNormEps: 1e-6,
    },
  },
]

function provider(source: ImportSource): WeightProvider {
  const byName = new Map(source.tensors.map((t) => [t.name, t]))
  return async (name) => {
    const t = byName.get(name)
    if (t === undefined) throw new Error(`import lacks ${name}`)
    return t.read()
  }
}

async function hfImport(files: Map<string, Uint8Array>): Promise<ImportSource> {
  const config = parseModelConfig(JSON.parse(new TextDecoder().decode(files.get('config.json'))))
  const reader = await SafetensorsReader.open(
    bytesSource('model.safetensors', files.get('model.safetensors') as Uint8Array),
  )
  return hfImportSource(config, locateTensors(config, new Map([['model.safetensors', reader]])))
}

function ggufImport(bytes: Uint8Array): Promise<ImportSource> {
  return openGgufModel(bytesSource('model.gguf', bytes))
}

let llama: LlamaCpp
let dir: string
beforeAll(async () => {
  llama = await loadLlamaCpp()
  dir = await mkdtemp(join(tmpdir(), 'butterfly-llama-cpp-'))
})
afterAll(async () => {
  await llama?.dispose()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

describe('greedy tokens agree with llama.cpp', () => {
  FAMILIES.forEach(({ name, config }, i) => {
    test(name, async () => {
      const weights = seededWeights(config, 1000 + i)
      const gguf = ggufModelFile(config, weights)
      const path = join(dir, `${config.architecture}.gguf`)
      await writeFile(path, gguf)
      const reference = await llama.greedy(path, PROMPT, STEPS, { contextSize: CONTEXT })
      const tie = reference.gaps.findIndex((g) => g < TIE)
      const upTo = tie === -1 ? STEPS : tie
      const fromGguf = await ggufImport(gguf)
      const fromHf = await hfImport(hfModelFiles(config, weights))
      expect(fromHf.config).toEqual(config)
      const got: Record<string, number[]> = {}
      for (const k of [1, 2])
        got[`gguf K=${k}`] = await ortGreedy(fromGguf.config, provider(fromGguf), k, PROMPT, STEPS)
      got['hf K=1'] = await ortGreedy(fromHf.config, provider(fromHf), 1, PROMPT, STEPS)
      const agree = Object.values(got).every(
        (t) => t.slice(0, upTo).join() === reference.tokens.slice(0, upTo).join(),
      )
      const gap = Math.min(...reference.gaps.slice(0, upTo))
      console.log(
        `llama.cpp agreement ${config.architecture}: ${upTo}/${STEPS} greedy tokens compared` +
          `${tie === -1 ? '' : ` (tie at step ${tie})`}, ORT K=1, K=2 and the HF import ` +
          `${agree ? 'identical' : 'DIFFERENT'}; smallest top-2 logit gap ${gap.toFixed(3)}`,
      )
      const note =
        tie === -1
          ? ''
          : ` (llama.cpp's two leading logits tie within ${TIE} at step ${tie}: compared up to it)`
      for (const [what, tokens] of Object.entries(got)) {
        expect(tokens.slice(0, upTo), `${what}${note}`).toEqual(reference.tokens.slice(0, upTo))
      }
      expect(got['hf K=1'], 'HF and GGUF imports').toEqual(got['gguf K=1'])
    })
  })
})

describe('GGUF files we refuse', () => {
  const config = FAMILIES[0]?.config as ModelConfig
  const weights = seededWeights(config, 7)
  const cases: Array<[string, Uint8Array, string, RegExp]> = [
    [
      'an unknown architecture',
      ggufModelFile(config, weights, {
        dropMeta: ['general.architecture'],
        extraMeta: [{ key: 'general.architecture', type: 'string', value: 'mamba' }],
      }),
      'ERR_MODEL_CONFIG',
      /general.architecture "mamba" is not supported/,
    ],
    [
      'a norm tensor missing',
      ggufModelFile(config, weights, { dropTensors: ['blk.1.ffn_norm.weight'] }),
      'ERR_MODEL_TENSOR_MISSING',
      /tensor blk\.1\.ffn_norm\.weight/,
    ],
    [
      'head counts that do not divide',
      ggufModelFile(config, weights, {
        dropMeta: ['llama.attention.head_count_kv'],
        extraMeta: [{ key: 'llama.attention.head_count_kv', type: 'u32', value: 3 }],
      }),
      'ERR_MODEL_CONFIG',
      /num_key_value_heads/,
    ],
  ]
  test.each(cases)('%s', async (_, bytes, code, message) => {
    const err = (await ggufImport(bytes).catch((e: unknown) => e)) as ButterflyError
    expect(err.code).toBe(code)
    expect(err.message).toMatch(message)
  })
})

describe('the llama.cpp runner', () => {
  test('without the install it says how to get it', async () => {
    const saved = process.env.BUTTERFLY_LLAMA_CPP_DIR
    process.env.BUTTERFLY_LLAMA_CPP_DIR = join(dir, 'no-llama-cpp-here')
    try {
      await expect(loadLlamaCpp()).rejects.toThrow(/run `node scripts\/ensure-llama-cpp\.mjs`/)
    } finally {
      if (saved === undefined) delete process.env.BUTTERFLY_LLAMA_CPP_DIR
      else process.env.BUTTERFLY_LLAMA_CPP_DIR = saved
    }
  })
})
