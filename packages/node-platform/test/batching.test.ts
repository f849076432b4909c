import {
  type GeneratedToken,
  type GenerateRequest,
  generate,
  type ModelConfig,
  type Pipeline,
  type StageSession,
  uniformPartition,
} from '@butterfly/core'
import { FAMILY_CONFIGS } from '@butterfly/testing'
import { syntheticConfig, syntheticWeights } from '@butterfly/testing/node'
import { afterAll, describe, expect, test } from 'vitest'
import { createNodeBackend } from '../src/backend/node-backend.js'

// Continuous batching on onnxruntime-node: generations running together through the same stages
// (decode steps batched, prompts run in chunks between them) produce exactly what each produces
// alone: the same tokens and bit-identical candidates, greedy and seeded, for any mix of prompt
// lengths. Compared with toEqual on the raw floats: no tolerance, because nothing a generation
// computes may depend on what shares its run.

const CHUNK = 8

// Prompt chunks batch too, except with int4 weights: MatMulNBits rows of a prompt differ in their
// last bits with the rows that share the run (the int4 case fails without that rule).
const configs: Array<[string, ModelConfig, { batched: boolean; prompts: boolean; int4Compute?: 'int8' }]> = [
  ['synthetic:tiny (fp32)', syntheticConfig('tiny'), { batched: true, prompts: true }],
  [
    'qwen3 int4 (MatMulNBits: single rows padded)',
    {
      ...(FAMILY_CONFIGS.qwen3 as ModelConfig),
      quantization: { method: 'int4', bits: 4, blockSize: 16, lmHead: true },
    },
    { batched: true, prompts: false },
  ],
  [
    'qwen3 int4, int8 activations (--int4-compute int8)',
    {
      ...(FAMILY_CONFIGS.qwen3 as ModelConfig),
      quantization: { method: 'int4', bits: 4, blockSize: 16, lmHead: true },
    },
    { batched: true, prompts: false, int4Compute: 'int8' },
  ],
  // Sliding layers build one window mask per run: one generation per run, chunked prompts still.
  ['gemma3 (sliding window)', FAMILY_CONFIGS.gemma3 as ModelConfig, { batched: false, prompts: false }],
]

async function build(
  config: ModelConfig,
  stages: number,
  int4Compute?: 'int8',
  microBatches?: number,
): Promise<Pipeline & { stages: StageSession[] }> {
  const backend = createNodeBackend({
    threads: 1,
    prefillChunk: CHUNK,
    ...(int4Compute ? { int4Compute } : {}),
    ...(microBatches === undefined ? {} : { microBatches }),
  })
  const weights = syntheticWeights(config)
  const sessions: StageSession[] = []
  for (const r of uniformPartition(config.numLayers, stages)) {
    sessions.push(await backend.createStage({ config, layerStart: r.start, layerEnd: r.end }, weights))
  }
  return { stages: sessions, maxContext: config.maxContext }
}

/**
 * Mixed prompt lengths (1 to 5 chunks and single positions) and sampling settings. New prompts'
 * first chunks of one size batch while they fit in one chunk's positions (the two 3s); later
 * chunks, which have a past, run alone (the two 9s: 5 then 4 positions).
 */
function requests(config: ModelConfig): GenerateRequest[] {
  const lengths = [1, 3, 7, 12, 20, 33, 3, 9, 9]
  return lengths.map((n, i) => ({
    generationId: `g${i}`,
    promptIds: Array.from({ length: n }, (_, j) => (7 + 13 * i + 29 * j) % config.vocabSize),
    maxTokens: 10,
    sampling: i % 2 === 0 ? { temperature: 0 } : { temperature: 0.9, topK: 20, seed: 1000 + i },
  }))
}

async function collect(
  pipeline: Pipeline,
  request: GenerateRequest,
  signal?: AbortSignal,
): Promise<GeneratedToken[]> {
  const out: GeneratedToken[] = []
  for await (const t of generate(pipeline, request, signal)) out.push(t)
  return out
}

/** What must match bit for bit: each token and its candidates. */
const trace = (tokens: readonly GeneratedToken[]) =>
  tokens.map((t) => ({
    id: t.id,
    values: Array.from(t.topk.values),
    ids: Array.from(t.topk.ids),
    lse: t.topk.logSumExp,
  }))

for (const [name, config, { batched, prompts, int4Compute }] of configs) {
  describe(`continuous batching: ${name}, 2 stages`, () => {
    const pipelines: Array<Pipeline & { stages: StageSession[] }> = []
    afterAll(async () => {
      await Promise.all(pipelines.flatMap((p) => p.stages.map((s) => s.dispose())))
    })
    const pipeline = async () => {
      const p = await build(config, 2, int4Compute)
      pipelines.push(p)
      return p
    }

    test('generations together produce exactly what each produces alone', async () => {
      const reqs = requests(config)
      const aloneOn = await pipeline()
      const alone: ReturnType<typeof trace>[] = []
      for (const r of reqs) alone.push(trace(await collect(aloneOn, r)))
      const together = await pipeline()
      const results = await Promise.all(reqs.map((r) => collect(together, r)))
      results.forEach((tokens, i) => {
        expect(tokens.length, `generation ${i}`).toBe(10)
        expect(trace(tokens), `generation ${i}`).toEqual(alone[i])
      })
      for (const stage of together.stages) {
        const stats = stage.batchStats
        expect(stats).toBeDefined()
        if (batched) {
          // Six generations decoding at once: runs carried several of them.
          expect(stats?.widest).toBeGreaterThanOrEqual(3)
          expect(stats?.runs).toBeLessThan(stats?.steps ?? 0)
          expect(stats?.widestPrefill).toBe(prompts ? 2 : 1)
        } else {
          expect(stats?.widest).toBe(1)
          expect(stats?.widestPrefill).toBe(1)
        }
        expect(stage.activeGenerations).toBe(0)
      }
    })

    test('a generation cancelled mid-batch frees its slot; the others are undisturbed', async () => {
      const reqs = requests(config).slice(0, 4)
      const p = await pipeline()
      const alone: ReturnType<typeof trace>[] = []
      for (const r of reqs) alone.push(trace(await collect(p, r)))
      const abort = new AbortController()
      const cancelled = (async () => {
        const got: GeneratedToken[] = []
        try {
          for await (const t of generate(p, reqs[1] as GenerateRequest, abort.signal)) {
            got.push(t)
            if (got.length === 3) abort.abort(new Error('client went away'))
          }
        } catch (err) {
          return { got, err }
        }
        return { got, err: undefined }
      })()
      const others = Promise.all([0, 2, 3].map((i) => collect(p, reqs[i] as GenerateRequest)))
      const [stopped, rest] = await Promise.all([cancelled, others])
      expect(stopped.err).toBeInstanceOf(Error)
      expect(trace(stopped.got)).toEqual((alone[1] as ReturnType<typeof trace>).slice(0, 3))
      for (const [j, tokens] of rest.entries()) expect(trace(tokens)).toEqual(alone[[0, 2, 3][j] as number])
      for (const stage of p.stages) expect(stage.activeGenerations).toBe(0)
      // The freed slots serve a new generation exactly as before.
      expect(trace(await collect(p, reqs[1] as GenerateRequest))).toEqual(alone[1])
    })
  })
}

describe('chunked prefill on one stage', () => {
  let stage: StageSession | undefined
  afterAll(async () => {
    await stage?.dispose()
  })

  test('decode steps of a running generation keep going while a long prompt is prefilled', async () => {
    const config = syntheticConfig('tiny')
    const backend = createNodeBackend({ threads: 1, prefillChunk: 4 })
    stage = await backend.createStage(
      { config, layerStart: 0, layerEnd: config.numLayers },
      syntheticWeights(config),
    )
    const s = stage
    await s.step('a', { tokens: [1, 2], seqLen: 2, startPos: 0 })
    const long = Array.from({ length: 40 }, (_, i) => (3 + i) % config.vocabSize)
    let prefilled = false
    let decodedMeanwhile = 0
    const prefill = s.step('b', { tokens: long, seqLen: long.length, startPos: 0 }).then((out) => {
      prefilled = true
      return out
    })
    for (let pos = 2; !prefilled && pos < 30; pos++) {
      await s.step('a', { tokens: [5], seqLen: 1, startPos: pos })
      if (!prefilled) decodedMeanwhile++
    }
    const out = await prefill
    expect(out.topk?.values.length).toBeGreaterThan(0)
    // 40 positions in chunks of 4 is ten runs; decode steps alternate with them.
    expect(decodedMeanwhile).toBeGreaterThanOrEqual(8)
  })
})

describe('micro-batches', () => {
  // Eight generations decoding on one stage: with microBatches 2 a run takes at most half of
  // them, so the next stage (or the coordinator) has the first half while this one runs the
  // second; with 1 (the default), everyone waiting runs in one batch. The tokens are the same.
  const config = syntheticConfig('tiny')
  const steps = async (microBatches: number | undefined) => {
    const p = await build(config, 1, undefined, microBatches)
    try {
      const reqs = requests(config)
        .slice(0, 8)
        .map((r) => ({ ...r, promptIds: r.promptIds.slice(0, 1) }))
      const out = await Promise.all(reqs.map((r) => collect(p, r)))
      return { traces: out.map(trace), widest: p.stages[0]?.batchStats?.widest }
    } finally {
      await Promise.all(p.stages.map((s) => s.dispose()))
    }
  }

  test('a stage runs its decoding generations in groups, and the tokens do not change', async () => {
    const one = await steps(undefined)
    const two = await steps(2)
    const three = await steps(3)
    expect(one.widest).toBe(8)
    expect(two.widest).toBe(4)
    expect(three.widest).toBe(3)
    expect(two.traces).toEqual(one.traces)
    expect(three.traces).toEqual(one.traces)
  })

  test('microBatches must be a whole number of at least 1', async () => {
    await expect(build(config, 1, undefined, 0)).rejects.toMatchObject({ code: 'ERR_STEP_ORDER' })
    await expect(build(config, 1, undefined, 1.5)).rejects.toMatchObject({ code: 'ERR_STEP_ORDER' })
  })
})

describe('generations on scattered slots', () => {
  // Ten generations hold slots 0..9 of one pool. Five of them (slots 0-3 and 9) decode together
  // (the batch gate runs them once half the stage's generations are back): one run over slots
  // 0..9, with 4-8 as padding, is cheaper than two runs, and it must neither change those five
  // outputs nor touch the padding slots' caches.
  const config = syntheticConfig('tiny')
  const stages: StageSession[] = []
  afterAll(async () => {
    await Promise.all(stages.map((s) => s.dispose()))
  })
  const open = async () => {
    const backend = createNodeBackend({ threads: 1 })
    const s = await backend.createStage(
      { config, layerStart: 0, layerEnd: config.numLayers },
      syntheticWeights(config),
    )
    stages.push(s)
    return s
  }
  const prompt = (g: number) =>
    Array.from({ length: 3 + g }, (_, j) => (5 + 11 * g + 7 * j) % config.vocabSize)
  const decode = (s: StageSession, g: number, at: number) =>
    s.step(`g${g}`, { tokens: [(9 + g) % config.vocabSize], seqLen: 1, startPos: at })
  const topk = (o: Awaited<ReturnType<StageSession['step']>>) => ({
    values: Array.from(o.topk?.values ?? []),
    ids: Array.from(o.topk?.ids ?? []),
    lse: o.topk?.logSumExp,
  })
  const all = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
  const first = [0, 1, 2, 3, 9]
  const later = [4, 5, 6, 7, 8]

  test('one run over the gap, and every output as alone', async () => {
    const alone = await open()
    const want = new Map<number, ReturnType<typeof topk>>()
    for (const g of all) {
      const n = prompt(g).length
      await alone.step(`g${g}`, { tokens: prompt(g), seqLen: n, startPos: 0 })
      await decode(alone, g, n)
      want.set(g, topk(await decode(alone, g, n + 1)))
    }

    const s = await open()
    for (const g of all) await s.step(`g${g}`, { tokens: prompt(g), seqLen: prompt(g).length, startPos: 0 })
    await Promise.all(all.map((g) => decode(s, g, prompt(g).length)))
    const runsBefore = s.batchStats?.runs ?? 0
    const got = await Promise.all(first.map((g) => decode(s, g, prompt(g).length + 1)))
    expect((s.batchStats?.runs ?? 0) - runsBefore).toBe(1)
    for (const [i, o] of got.entries()) expect(topk(o), `g${first[i]}`).toEqual(want.get(first[i] as number))
    // The padding slots' caches are intact: their next steps are as alone.
    const rest = await Promise.all(later.map((g) => decode(s, g, prompt(g).length + 1)))
    for (const [i, o] of rest.entries()) expect(topk(o), `g${later[i]}`).toEqual(want.get(later[i] as number))
  })
})
