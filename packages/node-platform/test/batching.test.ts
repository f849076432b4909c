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
import { afterAll, describe, expect, test, vi } from 'vitest'
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

/** A one-stage tiny model on one thread, disposed after the file. */
const whole: StageSession[] = []
afterAll(async () => {
  await Promise.all(whole.map((s) => s.dispose()))
})
async function wholeStage(config: ModelConfig): Promise<StageSession> {
  const s = await createNodeBackend({ threads: 1 }).createStage(
    { config, layerStart: 0, layerEnd: config.numLayers },
    syntheticWeights(config),
  )
  whole.push(s)
  return s
}

describe('generations on scattered slots', () => {
  // Ten generations hold slots 0..9 of one pool. Five of them (slots 0-3 and 9) decode together
  // (the batch gate runs them once half the stage's generations are back): the stage gathers them
  // onto slots 0..4 (g9 swaps with g4) and runs them once, without padding. Neither their outputs
  // nor the other five's caches may change; the other five then hold slots 5..9 and run as they are.
  const config = syntheticConfig('tiny')
  const open = () => wholeStage(config)
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

  test('one run without padding, and every output as alone', async () => {
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
    const before = s.batchStats
    const got = await Promise.all(first.map((g) => decode(s, g, prompt(g).length + 1)))
    const after = s.batchStats
    expect((after?.runs ?? 0) - (before?.runs ?? 0)).toBe(1)
    expect((after?.swaps ?? 0) - (before?.swaps ?? 0)).toBe(1)
    expect((after?.padded ?? 0) - (before?.padded ?? 0)).toBe(0)
    for (const [i, o] of got.entries()) expect(topk(o), `g${first[i]}`).toEqual(want.get(first[i] as number))
    // The others' caches moved intact: their next steps are as alone, in one run with no swap.
    const rest = await Promise.all(later.map((g) => decode(s, g, prompt(g).length + 1)))
    expect((s.batchStats?.runs ?? 0) - (after?.runs ?? 0)).toBe(1)
    expect((s.batchStats?.swaps ?? 0) - (after?.swaps ?? 0)).toBe(0)
    expect((s.batchStats?.padded ?? 0) - (after?.padded ?? 0)).toBe(0)
    for (const [i, o] of rest.entries()) expect(topk(o), `g${later[i]}`).toEqual(want.get(later[i] as number))
  })
})

describe('a generation moving up a KV tier in a batch', () => {
  // a, b and c hold slots 0..2 of the first tier (32 positions). After a round of all three,
  // c's and b's next steps run together (the batch gate waits for both), c's first; b's needs a
  // 33rd position, so b moves to the next tier and c, the last slot, moves into b's old one while
  // the run is being made: c must be read and written where it now lives, b in its new pool.
  const config = syntheticConfig('tiny')
  const open = () => wholeStage(config)
  type G = 'a' | 'b' | 'c'
  const lengths: Record<G, number> = { a: 3, b: 31, c: 4 }
  const prompt = (n: number) => Array.from({ length: n }, (_, j) => (7 + 5 * n + 3 * j) % config.vocabSize)
  const values = (o: Awaited<ReturnType<StageSession['step']>>) => Array.from(o.topk?.values ?? [])
  /** Decode steps, in rounds of generations stepped together: each generation's k-th is token 11 + k. */
  const rounds: G[][] = [['a', 'b', 'c'], ['c', 'b'], ['a'], ['a', 'b', 'c']]

  test('every generation decodes as alone', async () => {
    const alone = await open()
    const want: Record<G, number[][]> = { a: [], b: [], c: [] }
    for (const g of ['a', 'b', 'c'] as const) {
      const n = lengths[g]
      await alone.step(g, { tokens: prompt(n), seqLen: n, startPos: 0 })
      for (let k = 0; k < rounds.filter((r) => r.includes(g)).length; k++) {
        want[g].push(values(await alone.step(g, { tokens: [11 + k], seqLen: 1, startPos: n + k })))
      }
    }
    const s = await open()
    const got: Record<G, number[][]> = { a: [], b: [], c: [] }
    for (const g of ['a', 'b', 'c'] as const) {
      await s.step(g, { tokens: prompt(lengths[g]), seqLen: lengths[g], startPos: 0 })
    }
    for (const round of rounds) {
      console.log('round', round, s.batchStats)
      const outs = await Promise.all(
        round.map((g) => {
          const k = got[g].length
          return s.step(g, { tokens: [11 + k], seqLen: 1, startPos: lengths[g] + k })
        }),
      )
      for (const [i, g] of round.entries())
        got[g].push(values(outs[i] as Awaited<ReturnType<StageSession['step']>>))
    }
    expect(got).toEqual(want)
  })
})

describe('KV memory after a burst', () => {
  // The pools keep their room while generations come and go (reallocating after every burst
  // forced full garbage collections), and give it back once it was not needed for a trim period.
  const config = syntheticConfig('tiny')

  test('kept while needed, freed two trim periods after the last generation left', async () => {
    const s = await wholeStage(config)
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    try {
      const ids = Array.from({ length: 8 }, (_, g) => `m${g}`)
      const prompt = [3, 1, 4, 1]
      await Promise.all(ids.map((id) => s.step(id, { tokens: prompt, seqLen: 4, startPos: 0 })))
      await Promise.all(ids.map((id) => s.step(id, { tokens: [5], seqLen: 1, startPos: 4 })))
      const held = s.batchStats?.kvBytes ?? 0
      expect(held).toBeGreaterThan(0)
      for (const id of ids) s.endGeneration(id)
      expect(s.batchStats?.kvBytes).toBe(held)
      // The first trim sees the eight generations since the stage started: it keeps their room.
      vi.advanceTimersByTime(2000)
      expect(s.batchStats?.kvBytes).toBe(held)
      vi.advanceTimersByTime(2000)
      expect(s.batchStats?.kvBytes).toBe(0)
      // A new generation after that gets room again and decodes.
      await s.step('n', { tokens: prompt, seqLen: 4, startPos: 0 })
      expect((await s.step('n', { tokens: [5], seqLen: 1, startPos: 4 })).topk?.ids.length).toBeGreaterThan(0)
    } finally {
      vi.useRealTimers()
    }
  })
})
