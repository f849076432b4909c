import {
  calibrate,
  FingerprintingStage,
  type GeneratedToken,
  generate,
  type Pipeline,
  type Replica,
  ReplicatedStage,
  ReputationBook,
  type StageSession,
  type StageStepInput,
  type StageStepOutput,
  type ToleranceTable,
  uniformPartition,
  VerifyError,
} from '@butterfly/core'
import { DelegatingStage, type FaultMode, FaultyStage } from '@butterfly/testing'
import { syntheticConfig, syntheticWeights } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createNodeBackend } from '../src/backend/node-backend.js'

/*
 * Replicated stages over real ORT stages of the synthetic 'tiny' model (K = 2: layers [0,2) and
 * [2,4)), replicas of two numeric classes: cpu/fp32 and cpu/fp16w (fp16-rounded weights).
 *
 * Which reference the tokens must equal: calibration finds fp16w ~1e-3 away from fp32 while honest
 * fp32 replicas are bit-identical (within-class tolerance = the 1e-4 floor), so the two classes are
 * NOT homogeneous (cross tolerance > 2x the tighter within-class one) and never vote together.
 * Each stage votes within its largest class group; with an fp32 majority the accepted output is
 * always an fp32 replica's, bit-identical to an unreplicated fp32 stage, so the tokens must equal
 * the all-fp32 reference exactly. Where the fp16w group is the larger, the reference is the
 * pipeline built from the class that served each stage (checked in its own test).
 */

const config = syntheticConfig('tiny')
const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const STEPS = 64
const TIMEOUT_MS = 250
const FP32 = 'cpu/fp32'
const FP16W = 'cpu/fp16w'
const ranges = uniformPartition(config.numLayers, 2)
/** A stage over another layer range, for 'other-layer' liars at the first and last stages. */
const otherRanges = [
  { start: 0, end: 1 },
  { start: 3, end: config.numLayers },
]

type Dtype = 'F32' | 'F16'
const pools: Record<Dtype, StageSession[][]> = { F32: [[], []], F16: [[], []] }
const others: StageSession[][] = [[], []]
let tolerances: ToleranceTable
let reference: number[]
const all: StageSession[] = []

async function build(dtype: Dtype, start: number, end: number): Promise<StageSession> {
  const backend = createNodeBackend({ threads: 1 })
  const s = await backend.createStage(
    { config, layerStart: start, layerEnd: end },
    syntheticWeights(config, dtype),
  )
  all.push(s)
  return s
}

async function run(stages: readonly StageSession[]): Promise<number[]> {
  const pipeline: Pipeline = { stages, maxContext: config.maxContext }
  const ids: number[] = []
  for await (const t of generate(pipeline, {
    promptIds: PROMPT,
    maxTokens: STEPS,
    sampling: { temperature: 0 },
  })) {
    ids.push(t.id)
  }
  return ids
}

beforeAll(async () => {
  for (let s = 0; s < 2; s++) {
    const r = ranges[s] as { start: number; end: number }
    for (let i = 0; i < 9; i++) pools.F32[s]?.push(await build('F32', r.start, r.end))
    for (let i = 0; i < 4; i++) pools.F16[s]?.push(await build('F16', r.start, r.end))
    const o = otherRanges[s] as { start: number; end: number }
    for (let i = 0; i < 2; i++) others[s]?.push(await build('F32', o.start, o.end))
  }
  // Calibration: two fp32 and one fp16w replica of stage 0 run the same known input.
  const outputs = await Promise.all(
    [pools.F32[0]?.[0], pools.F32[0]?.[1], pools.F16[0]?.[0]].map(async (stage, i) => {
      const out = await (stage as StageSession).step(`calibrate${i}`, {
        tokens: PROMPT,
        seqLen: 8,
        startPos: 0,
      })
      stage?.endGeneration(`calibrate${i}`)
      return out.hidden as Float32Array
    }),
  )
  const [a, b, c] = outputs as [Float32Array, Float32Array, Float32Array]
  const cal = calibrate(
    [
      { cls: FP32, hidden: a },
      { cls: FP32, hidden: b },
      { cls: FP16W, hidden: c },
    ],
    a,
    { hiddenSize: config.hiddenSize },
  )
  expect(cal.rejected).toEqual([])
  tolerances = cal.table
  reference = await run([pools.F32[0]?.[0], pools.F32[1]?.[0]] as StageSession[])
  expect(reference).toHaveLength(STEPS)
}, 120_000)

afterAll(async () => {
  await Promise.all(all.map((s) => s.dispose()))
})

interface Fault {
  readonly mode: FaultMode
  readonly fromStep: number
  /** Patient liars (FaultyStage): honest for this many steps served, then lying. */
  readonly honestSteps?: number
  readonly lieRate?: number
  readonly phase?: 'prefill' | 'decode' | 'all'
  /** Colluders share a seed and tell the identical lie. */
  readonly seed?: number
}

interface Layout {
  /** Classes of the replicas, then of the spares, in order ('32' | '16'). */
  readonly replicas: ReadonlyArray<'32' | '16'>
  readonly spares: ReadonlyArray<'32' | '16'>
  /** Faults by replica index. */
  readonly faults?: ReadonlyMap<number, Fault>
}

interface Built {
  readonly stage: ReplicatedStage
  readonly faulty: string[]
  readonly honest: string[]
  readonly wrappers: Map<string, FaultyStage>
}

function replicatedStage(
  s: number,
  f: number,
  layout: Layout,
  book: ReputationBook,
  extra: {
    maxReplicas?: number
    rngSeed?: number
    fingerprints?: boolean
    twoFaced?: number
    verification?: 'windowed' | 'every-step'
    window?: number
  } = {},
): Built {
  const taken = { F32: 0, F16: 0 }
  const faulty: string[] = []
  const honest: string[] = []
  const wrappers = new Map<string, FaultyStage>()
  let otherUsed = 0
  const make = (kind: '32' | '16', name: string, fault: Fault | undefined): Replica => {
    const dtype: Dtype = kind === '32' ? 'F32' : 'F16'
    const inner = pools[dtype][s]?.[taken[dtype]++] as StageSession
    const mode = fault?.mode ?? 'honest'
    const other = mode === 'other-layer' ? others[s]?.[otherUsed++] : undefined
    const seed = fault?.seed ?? 7 + wrappers.size
    const noise = s === 1 ? 0.5 : 0.01 // logits must move enough to change the greedy token
    const session = new FaultyStage(inner, {
      mode,
      fromStep: fault?.fromStep ?? 0,
      ...(fault?.honestSteps === undefined ? {} : { honestSteps: fault.honestSteps }),
      ...(fault?.lieRate === undefined ? {} : { lieRate: fault.lieRate }),
      ...(fault?.phase === undefined ? {} : { phase: fault.phase }),
      seed,
      noise,
      delayMs: 4 * TIMEOUT_MS,
      ...(other === undefined ? {} : { other }),
    })
    const peerId = `s${s}-${name}`
    wrappers.set(peerId, session)
    const twoFaced = name === `r${extra.twoFaced}-${kind}`
    ;(fault === undefined && !twoFaced ? honest : faulty).push(peerId)
    // With fingerprints on, replicas answer as a stage host does: fingerprint asks are honoured.
    const served = extra.fingerprints === false ? session : new FingerprintingStage(session)
    return {
      peerId,
      cls: kind === '32' ? FP32 : FP16W,
      session: twoFaced ? new TwoFacedStage(served as FingerprintingStage) : served,
    }
  }
  const replicas = layout.replicas.map((k, i) => make(k, `r${i}-${k}`, layout.faults?.get(i)))
  const spares = layout.spares.map((k, i) => make(k, `spare${i}-${k}`, undefined))
  let x = extra.rngSeed ?? 12345
  const rng = () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    return x / 2 ** 32
  }
  const r = ranges[s] as { start: number; end: number }
  const stage = new ReplicatedStage(
    {
      layerStart: r.start,
      layerEnd: r.end,
      isFirst: s === 0,
      isLast: s === 1,
      hiddenSize: config.hiddenSize,
      f,
      stage: s,
      stepTimeoutMs: TIMEOUT_MS,
      ...(extra.fingerprints === undefined ? {} : { fingerprints: extra.fingerprints }),
      ...(extra.maxReplicas === undefined ? {} : { maxReplicas: extra.maxReplicas }),
      // The suites above were written for 2f + 1 votes on every step; windowed runs opt in.
      verification: extra.verification ?? 'every-step',
      ...(extra.window === undefined ? {} : { window: extra.window }),
    },
    { replicas, spares, tolerances, reputation: book, rng },
  )
  return { stage, faulty, honest, wrappers }
}

/**
 * A liar that fingerprints its honest output but ships a lie whenever a full state is asked of it
 * or fetched from it: the fingerprint alone would vouch for it, so the vote must catch the full
 * state (against the others' fingerprints, and against its own fingerprint once fetched).
 */
class TwoFacedStage extends DelegatingStage<FingerprintingStage> {
  override async step(id: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    const out = await this.inner.step(id, input, signal)
    return out.hidden === undefined ? out : { hidden: out.hidden.map((v) => v * 1.05) }
  }
  async fetchHidden(id: string, startPos: number): Promise<Float32Array> {
    return (await this.inner.fetchHidden(id, startPos)).map((v) => v * 1.05)
  }
  override async dispose(): Promise<void> {}
}

/** Nobody is ever trusted to lead: with 'every-step', every step is voted by 2f + 1 replicas. */
const strictBook = () => new ReputationBook({ trustAfter: 1_000_000 })

test('calibrated tolerances keep fp32 and fp16-weight replicas in separate vote groups', () => {
  expect(tolerances.get(FP32, FP32).relative).toBeCloseTo(1e-4, 10)
  expect(tolerances.get(FP32, FP16W).relative).toBeGreaterThan(2 * 1e-4)
  expect(tolerances.homogeneous(FP32, FP16W)).toBe(false)
  expect(tolerances.homogeneousGroups([FP32, FP16W])).toEqual([[FP32], [FP16W]])
})

const DATA_FAULTS: FaultMode[] = ['noise', 'zero', 'stale', 'other-layer']
const TIME_FAULTS: FaultMode[] = ['late', 'silent']

const layouts = (f: number, mode: FaultMode): [Layout, Layout] =>
  f === 1
    ? [
        // stage 0: the primary lies from the prefill on; stage 1: the third fp32 replica from step 5
        {
          replicas: ['32', '32', '16', '32'],
          spares: ['32', '16'],
          faults: new Map([[0, { mode, fromStep: 0 }]]),
        },
        { replicas: ['32', '16', '32', '32'], spares: ['32'], faults: new Map([[3, { mode, fromStep: 5 }]]) },
      ]
    : [
        {
          replicas: ['32', '16', '32', '32', '32', '16', '32'],
          spares: ['32', '32'],
          faults: new Map([
            [0, { mode, fromStep: 0 }],
            [3, { mode, fromStep: 10 }],
          ]),
        },
        {
          replicas: ['32', '32', '32', '16', '32', '32'],
          spares: ['32', '32'],
          faults: new Map([
            [2, { mode, fromStep: 3 }],
            [5, { mode, fromStep: 0 }],
          ]),
        },
      ]

for (const f of [1, 2]) {
  for (const fingerprints of [true, false]) {
    const how = fingerprints ? 'one full state + fingerprints' : 'full states from all'
    describe(`f = ${f} (${2 * f + 1} replicas per stage, fp32 + fp16w, ${how})`, () => {
      for (const mode of [...DATA_FAULTS, ...TIME_FAULTS]) {
        test(`${f} '${mode}' replica(s) per stage: reference tokens, faulty flagged, honest clean`, async () => {
          const book = strictBook()
          const [l0, l1] = layouts(f, mode)
          const built = [
            replicatedStage(0, f, l0, book, { fingerprints }),
            replicatedStage(1, f, l1, book, { fingerprints }),
          ]
          expect(await run(built.map((b) => b.stage))).toEqual(reference)
          for (const [i, { stage, faulty, honest }] of built.entries()) {
            const layout = (i === 0 ? l0 : l1) as Layout
            const joinsLate =
              DATA_FAULTS.includes(mode) || [...(layout.faults?.values() ?? [])].some((x) => x.fromStep > 0)
            const states = new Map(stage.replicas().map((r) => [r.peerId, r.state]))
            for (const id of faulty) {
              expect(book.isFlagged(id), id).toBe(true)
              if (TIME_FAULTS.includes(mode)) {
                // Retired at its first missed deadline, and flagged for it.
                expect(states.get(id)).toBe('failed')
                expect(book.get(id)).toMatchObject({ timeouts: 1, flagReason: 'unresponsive' })
              } else expect(states.get(id)).toBe('flagged')
            }
            for (const id of honest) {
              expect(book.isFlagged(id), id).toBe(false)
              expect(book.get(id)?.disagreements ?? 0, id).toBe(0)
              expect(book.get(id)?.timeouts ?? 0, id).toBe(0)
            }
            // Replacements that joined mid-generation replayed this stage's earlier inputs.
            if (joinsLate) expect(stage.stats.replayedSteps).toBeGreaterThan(0)
            expect(stage.activeGenerations).toBe(0)
            if (i === 0) {
              // Stage 0's primary is faulty from the prefill: the fingerprints outvote it and a
              // second full state is fetched.
              expect(stage.stats.fingerprints > 0).toBe(fingerprints)
              expect(stage.stats.fetches > 0).toBe(fingerprints)
            } else expect(stage.stats.fingerprints).toBe(0) // the last stage votes on tokens
          }
        })
      }
    })
  }
}

test('a two-faced primary (honest fingerprint, lying full state) is caught when asked and when fetched', async () => {
  for (const f of [1, 2]) {
    const book = strictBook()
    const n = 2 * f + 1
    // Stage 0: the two-faced replica is the primary; stage 1 gets an honest pipeline.
    const s0 = replicatedStage(0, f, { replicas: Array(n).fill('32'), spares: [] }, book, { twoFaced: 0 })
    const s1 = replicatedStage(1, f, { replicas: Array(n).fill('32'), spares: [] }, book)
    expect(await run([s0.stage, s1.stage])).toEqual(reference)
    const [liar] = s0.faulty as [string]
    // Caught on the prefill; from then on its record is the worst, so it is never again the one
    // asked for the full state (the only answer it lies in) and it is not flagged: it is harmless.
    expect(book.get(liar)?.disagreements).toBeGreaterThanOrEqual(1)
    expect(book.get(liar)?.streak).toBeLessThan(STEPS)
    for (const id of s0.honest) expect(book.get(id)?.disagreements ?? 0).toBe(0)
    expect(s0.stage.stats.fetches).toBeGreaterThanOrEqual(1)
  }
})

test('every token says which replicas computed each stage and how the vote went', async () => {
  const book = strictBook()
  const s0 = replicatedStage(
    0,
    1,
    { replicas: ['32', '32', '32'], spares: [], faults: new Map([[2, { mode: 'noise', fromStep: 5 }]]) },
    book,
  )
  const s1 = replicatedStage(1, 1, { replicas: ['32', '32', '32'], spares: [] }, book)
  const pipeline: Pipeline = { stages: [s0.stage, s1.stage], maxContext: config.maxContext }
  const seen: Array<NonNullable<GeneratedToken['provenance']>> = []
  for await (const t of generate(pipeline, {
    promptIds: PROMPT,
    maxTokens: 16,
    sampling: { temperature: 0 },
  })) {
    seen.push(t.provenance ?? [])
  }
  const [liar] = s0.faulty as [string]
  expect(seen).toHaveLength(16)
  for (const stages of seen) {
    expect(stages).toHaveLength(2)
    for (const st of stages) {
      expect(st?.spotChecked).toBe(false)
      expect(st?.agreeing.length).toBeGreaterThanOrEqual(2)
    }
  }
  // The liar lies from its sixth step (the prefill is the first) until it is flagged and retired.
  expect(seen[3]?.[0]?.disagreeing).toEqual([])
  expect(seen.some((st) => st[0]?.disagreeing.includes(liar))).toBe(true)
  expect(seen.at(-1)?.[0]?.peers).not.toContain(liar)
  for (const st of seen) for (const id of st[1]?.peers ?? []) expect(s1.honest).toContain(id)
})

test('a replica killed mid-generation is replaced by a spare that replays the history', async () => {
  const book = strictBook()
  const s0 = replicatedStage(0, 1, { replicas: ['32', '32', '32'], spares: [] }, book)
  const s1 = replicatedStage(
    1,
    1,
    { replicas: ['32', '32', '32'], spares: ['32'], faults: new Map([[1, { mode: 'gone', fromStep: 20 }]]) },
    book,
  )
  expect(await run([s0.stage, s1.stage])).toEqual(reference)
  const [killed] = s1.faulty as [string]
  expect(s1.stage.replicas().find((r) => r.peerId === killed)?.state).toBe('failed')
  const spare = s1.wrappers.get('s1-spare0-32') as FaultyStage
  expect(s1.stage.replicas().find((r) => r.peerId === 's1-spare0-32')?.state).toBe('active')
  // The prefill and 19 decode steps replayed as one chunk of 8 + 19 positions, then the step the
  // killed replica missed, and every later one.
  expect(spare.calls[0]).toMatchObject({ startPos: 0, seqLen: PROMPT.length + 19 })
  expect(spare.calls.slice(1).map((c) => c.startPos)).toEqual(
    Array.from({ length: STEPS - 20 }, (_, i) => PROMPT.length + 19 + i),
  )
  expect(s1.stage.stats.replayedSteps).toBe(20)
  expect(s1.stage.stats.failures).toBe(1)
})

test('f + 1 independent liars at a stage: ERR_NO_QUORUM naming the stage and the peers', async () => {
  for (const f of [1, 2]) {
    const book = strictBook()
    const liars = new Map(
      Array.from({ length: f + 1 }, (_, i) => [2 * i, { mode: 'noise' as const, fromStep: 0 }]),
    )
    const s0 = replicatedStage(
      0,
      f,
      { replicas: Array(2 * f + 1).fill('32'), spares: [], faults: liars },
      book,
    )
    const s1 = replicatedStage(1, f, { replicas: Array(2 * f + 1).fill('32'), spares: [] }, book)
    const err = await run([s0.stage, s1.stage]).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(VerifyError)
    const v = err as VerifyError
    expect(v.code).toBe('ERR_NO_QUORUM')
    expect(v.stage).toBe(0)
    expect(v.message).toContain('stage 0')
    for (const id of s0.faulty) {
      expect(v.peers).toContain(id)
      expect(v.message).toContain(id)
    }
    // A vote without quorum proves nothing, so nobody is blamed for it.
    for (const id of [...s0.faulty, ...s0.honest]) expect(book.isFlagged(id)).toBe(false)
  }
})

test('escalation: with a spare to ask, f + 1 liars are outvoted and flagged', async () => {
  const book = strictBook()
  const liars = new Map([
    [0, { mode: 'noise' as const, fromStep: 0 }],
    [1, { mode: 'zero' as const, fromStep: 0 }],
  ])
  const s0 = replicatedStage(0, 1, { replicas: ['32', '32', '32'], spares: ['32'], faults: liars }, book, {
    maxReplicas: 4,
  })
  const s1 = replicatedStage(1, 1, { replicas: ['32', '32', '32'], spares: [] }, book)
  expect(await run([s0.stage, s1.stage])).toEqual(reference)
  for (const id of s0.faulty) expect(book.isFlagged(id)).toBe(true)
  for (const id of s0.honest) expect(book.isFlagged(id)).toBe(false)
  expect(s0.stage.stats.escalations).toBeGreaterThan(0)
})

test('an fp16w majority serves the stage: tokens match the reference of the classes that served', async () => {
  const book = strictBook()
  const s0 = replicatedStage(0, 1, { replicas: ['16', '32', '16', '16'], spares: [] }, book)
  const s1 = replicatedStage(1, 1, { replicas: ['32', '32', '32'], spares: [] }, book)
  const mixed = await run([pools.F16[0]?.[3], pools.F32[1]?.[8]] as StageSession[])
  expect(await run([s0.stage, s1.stage])).toEqual(mixed)
  // The fp32 replica is of another vote group: never asked, never blamed.
  expect(book.get('s0-r1-32')).toBeUndefined()
})

test('windowed verification: trusted leaders run ahead, replicas confirm every step afterwards', async () => {
  const book = new ReputationBook({ trustAfter: 10 })
  const opts = { verification: 'windowed' as const, window: 8 }
  const s0 = replicatedStage(0, 1, { replicas: ['32', '32', '32'], spares: [] }, book, opts)
  const s1 = replicatedStage(1, 1, { replicas: ['32', '32', '32'], spares: [] }, book, {
    ...opts,
    fingerprints: false,
  })
  const pipeline: Pipeline = { stages: [s0.stage, s1.stage], maxContext: config.maxContext }
  const seen: GeneratedToken[] = []
  for await (const t of generate(pipeline, {
    promptIds: PROMPT,
    maxTokens: STEPS,
    sampling: { temperature: 0 },
  }))
    seen.push(t)
  expect(seen.map((t) => t.id)).toEqual(reference)
  for (const b of [s0, s1]) {
    expect(b.stage.stats.ahead).toBeGreaterThan(STEPS / 2)
    expect(b.stage.stats.windows).toBeGreaterThan(3)
    expect(b.stage.stats.rollbacks).toBe(0)
    // Until trusted, f + 1 = 2 replicas vote; the third is never needed.
    for (const id of b.honest) expect(book.get(id)?.disagreements ?? 0).toBe(0)
  }
  // Every token was confirmed by f + 1 = 2 distinct peers at every stage.
  for (const t of seen) {
    for (const p of t.provenance ?? []) {
      expect(p?.confirmed).toBe(true)
      expect(new Set(p?.agreeing).size).toBeGreaterThanOrEqual(2)
    }
  }
  expect(seen.some((t) => t.provenance?.[0]?.verification === 'window')).toBe(true)
})

for (const stageIndex of [0, 1]) {
  test(`windowed: a leader honest until trusted, then lying, is rolled back at stage ${stageIndex}, and no lie is shown`, async () => {
    const book = new ReputationBook({ trustAfter: 10 })
    const opts = { verification: 'windowed' as const, window: 8, rngSeed: 99 }
    // Every replica of the liar's stage but one is honest; the liar starts lying once trusted.
    const liarAt = new Map([[0, { mode: 'noise' as const, fromStep: 14 }]])
    const layout = (s: number): Layout => ({
      replicas: ['32', '32', '32'],
      spares: [],
      ...(s === stageIndex ? { faults: liarAt } : {}),
    })
    const s0 = replicatedStage(0, 1, layout(0), book, opts)
    const s1 = replicatedStage(1, 1, layout(1), book, opts)
    const pipeline: Pipeline = { stages: [s0.stage, s1.stage], maxContext: config.maxContext }
    const ids: number[] = []
    for await (const t of generate(pipeline, {
      promptIds: PROMPT,
      maxTokens: STEPS,
      sampling: { temperature: 0 },
    }))
      ids.push(t.id)
    expect(ids).toEqual(reference)
    const b = stageIndex === 0 ? s0 : s1
    const [liar] = b.faulty as [string]
    expect(book.isFlagged(liar)).toBe(true)
    // It lied as a leader or verifier: a window check caught it and rolled the generation back.
    expect(b.stage.stats.rollbacks).toBeGreaterThan(0)
    for (const id of [...s0.honest, ...s1.honest]) {
      expect(book.isFlagged(id), id).toBe(false)
      expect(book.get(id)?.disagreements ?? 0, id).toBe(0)
    }
  })
}

/*
 * Patient adversaries under windowed verification, one process: each must leave the tokens equal
 * to the reference, end flagged, and leave every honest peer unblamed.
 */
const patient: Array<[string, number, ReadonlyMap<number, Fault>]> = [
  ['lies on one step in fifty, at random', 1, new Map([[1, { mode: 'noise', fromStep: 0, lieRate: 0.02 }]])],
  ['lies only on the prefill', 1, new Map([[2, { mode: 'noise', fromStep: 0, phase: 'prefill' }]])],
  [
    'two colluders, honest until trusted, then the identical lie',
    2,
    new Map([
      [0, { mode: 'collude', fromStep: 0, honestSteps: 14, seed: 5 }],
      [3, { mode: 'collude', fromStep: 0, honestSteps: 14, seed: 5 }],
    ]),
  ],
]
for (const [what, f, faults] of patient) {
  for (const stageIndex of [0, 1]) {
    test(`windowed, f = ${f}: a replica that ${what} at stage ${stageIndex} is caught, and no lie is shown`, async () => {
      const book = new ReputationBook({ trustAfter: 10 })
      const opts = { verification: 'windowed' as const, window: 8, rngSeed: 3 }
      const n = 2 * f + 1
      const layout = (s: number): Layout => ({
        replicas: Array(n).fill('32'),
        spares: [],
        ...(s === stageIndex ? { faults } : {}),
      })
      const s0 = replicatedStage(0, f, layout(0), book, opts)
      const s1 = replicatedStage(1, f, layout(1), book, opts)
      const pipeline: Pipeline = { stages: [s0.stage, s1.stage], maxContext: config.maxContext }
      // Four generations of 64 tokens: a liar that lies rarely gets its chances.
      for (let g = 0; g < 4; g++) {
        const ids: number[] = []
        for await (const t of generate(pipeline, {
          promptIds: PROMPT,
          maxTokens: STEPS,
          sampling: { temperature: 0 },
        }))
          ids.push(t.id)
        expect(ids).toEqual(reference)
      }
      const b = stageIndex === 0 ? s0 : s1
      const lied = [...b.wrappers.values()].some((w) => w.calls.some((c) => c.lied))
      expect(lied).toBe(true)
      for (const id of b.faulty) expect(book.isFlagged(id), id).toBe(true)
      for (const id of [...s0.honest, ...s1.honest]) {
        expect(book.isFlagged(id), id).toBe(false)
        expect(book.get(id)?.disagreements ?? 0, id).toBe(0)
      }
    })
  }
}
