import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { expectedWeightShapes, generate, toFloat32 } from '@butterfly/core'
import {
  createLocalPipeline,
  createNodeBackend,
  createStageCacheDir,
  loadModel,
  resolveModelDir,
} from '@butterfly/node-platform'
import { median } from '@butterfly/node-platform/bench'
import { GGML, ggufModelFile } from '@butterfly/testing'
import { type LlamaCpp, loadLlamaCpp } from '@butterfly/testing/node'
import { afterAll, beforeAll, expect, test } from 'vitest'

// `npm run bench`, "One process vs llama.cpp": synthetic:100m in one process against llama.cpp
// (node-llama-cpp's prebuilt CPU build) on the same weights, written as GGUF: fp32 against F32,
// and our int4 (MatMulNBits, fp32 products and, with --int4-compute int8, int8 ones, as Q8_0's
// dot products are) against Q8_0, all on 2 threads with an F32 KV cache and flash
// attention off. Load (weights from disk to the first step possible), prompt and decode are
// timed in rounds, every configuration once per round; the table prints medians side by side.
// Our loads go through a stage cache (what `butterfly-worker` uses by default), as llama.cpp's
// go through a GGUF converted beforehand: the warm-up round fills it, and its cold load (graph
// built, weights read and pre-packed, the cache written) is printed in a column of its own.
// The only assertion is that the fp32 tokens are llama.cpp's: timings are reported, never judged.
// Runs with its own vitest config (e2e/bench/vitest.config.ts), never in `npm test`.

const QUICK = process.env.BUTTERFLY_BENCH_QUICK === '1'
const MODEL = QUICK ? 'synthetic:10m' : 'synthetic:100m'
const THREADS = 2
const PROMPT = Array.from({ length: 64 }, (_, i) => 3 + ((i * 31) % 250))
const STEPS = QUICK ? 8 : 32
const ROUNDS = QUICK ? 1 : 3

let dir: string
let llama: LlamaCpp
const ggufs: Record<'F32' | 'Q8_0', string> = { F32: '', Q8_0: '' }

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'butterfly-llama-bench-'))
  llama = await loadLlamaCpp()
  const model = await loadModel(await resolveModelDir(MODEL))
  try {
    const weights = new Map<string, Float32Array>()
    for (const [name, shape] of expectedWeightShapes(model.config)) {
      weights.set(name, toFloat32(await model.weights(name, shape)))
    }
    for (const [type, code] of [
      ['F32', GGML.F32],
      ['Q8_0', GGML.Q8_0],
    ] as const) {
      ggufs[type] = join(dir, `${type}.gguf`)
      await writeFile(ggufs[type], ggufModelFile(model.config, weights, { type: code }))
    }
  } finally {
    await model.close()
  }
}, 600_000)

afterAll(async () => {
  await llama?.dispose()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

interface Timed {
  loadMs: number
  prefillMs: number
  decodeTokensPerSec: number
  tokens: number[]
}

/** Ours, one process, one stage: the model read and its session built, then the same greedy run. */
async function ours(spec: string, int4Compute?: 'int8'): Promise<Timed> {
  const start = performance.now()
  const model = await loadModel(await resolveModelDir(spec))
  const backend = createNodeBackend({
    threads: THREADS,
    stageCache: createStageCacheDir({ dir: join(dir, 'stages') }),
    ...(int4Compute ? { int4Compute } : {}),
  })
  const pipeline = await createLocalPipeline(model, backend, { stages: 1 })
  const loaded = performance.now()
  try {
    const tokens: number[] = []
    let first = loaded
    for await (const t of generate(pipeline, {
      promptIds: PROMPT,
      maxTokens: STEPS,
      sampling: { temperature: 0 },
    })) {
      if (tokens.push(t.id) === 1) first = performance.now()
    }
    const end = performance.now()
    return {
      loadMs: loaded - start,
      prefillMs: first - loaded,
      decodeTokensPerSec: (STEPS - 1) / ((end - first) / 1000),
      tokens,
    }
  } finally {
    await pipeline.dispose()
    await model.close()
  }
}

test('one process against llama.cpp on the same weights', async () => {
  const runs = {
    'ours fp32': () => ours(MODEL),
    'llama.cpp F32': () => llama.timed(ggufs.F32, PROMPT, STEPS, { threads: THREADS }),
    'ours int4': () => ours(`${MODEL}:int4`),
    'ours int4, int8 activations': () => ours(`${MODEL}:int4`, 'int8'),
    'llama.cpp Q8_0': () => llama.timed(ggufs.Q8_0, PROMPT, STEPS, { threads: THREADS }),
  }
  const results = new Map<string, Timed[]>()
  const cold = new Map<string, number>()
  // A warm-up round (page cache, JIT, our stage cache) is dropped; then every configuration once per round.
  for (let round = 0; round <= ROUNDS; round++) {
    for (const [name, run] of Object.entries(runs)) {
      const r = await run()
      if (round > 0) results.set(name, [...(results.get(name) ?? []), r])
      else cold.set(name, r.loadMs)
    }
  }
  const m = (name: string, f: (t: Timed) => number) => median((results.get(name) ?? []).map(f))
  console.log(
    `\n## One process vs llama.cpp: ${MODEL}, ${THREADS} threads, ${PROMPT.length}-token prompt, ${STEPS} greedy tokens, medians of ${ROUNDS} rounds (${cpus()[0]?.model ?? 'cpu'} x ${cpus().length})`,
  )
  console.log(
    [
      'configuration',
      'load s',
      'first load s (no stage cache)',
      'prompt ms',
      'decode tok/s',
      'decode vs llama.cpp (goal >= 1.0)',
      'load vs llama.cpp (goal <= 1.0)',
      'tokens as llama.cpp',
    ].join('\t'),
  )
  for (const [name, ref] of [
    ['ours fp32', 'llama.cpp F32'],
    ['llama.cpp F32', undefined],
    ['ours int4', 'llama.cpp Q8_0'],
    ['ours int4, int8 activations', 'llama.cpp Q8_0'],
    ['llama.cpp Q8_0', undefined],
  ] as const) {
    const decode = m(name, (t) => t.decodeTokensPerSec)
    const load = m(name, (t) => t.loadMs)
    const same =
      ref === undefined
        ? '-'
        : `${(results.get(name)?.[0]?.tokens ?? []).filter((t, i) => t === results.get(ref)?.[0]?.tokens[i]).length}/${STEPS}`
    console.log(
      [
        name,
        (load / 1000).toFixed(2),
        name.startsWith('ours') ? ((cold.get(name) ?? 0) / 1000).toFixed(2) : '-',
        m(name, (t) => t.prefillMs).toFixed(0),
        decode.toFixed(1),
        ref === undefined ? '-' : (decode / m(ref, (t) => t.decodeTokensPerSec)).toFixed(2),
        ref === undefined ? '-' : (load / m(ref, (t) => t.loadMs)).toFixed(2),
        same,
      ].join('\t'),
    )
  }
  // Same weights, both exact: the greedy tokens agree (the Q8_0 and int4 weights differ, so those may not).
  expect(results.get('ours fp32')?.[0]?.tokens).toEqual(results.get('llama.cpp F32')?.[0]?.tokens)
}, 1_800_000)
