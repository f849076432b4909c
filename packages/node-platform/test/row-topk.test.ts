import {
  createMemoryTransport,
  createStageHost,
  MemoryNetwork,
  MessageConnection,
  type ModelConfig,
  RemoteStage,
  type StageSession,
  syntheticConfig,
  type TopKLogits,
  type Transport,
  tokenAgrees,
} from '@butterfly/core'
import { FAMILY_CONFIGS } from '@butterfly/testing'
import { buildPipeline } from '@butterfly/testing/node'
import { afterAll, describe, expect, test } from 'vitest'

// The last stage answering a window: one merged step of w decode tokens with allRows gives, per
// position, the candidates w single-position steps give. Greedy: identical argmax ids; values and
// log-sum-exps within MERGED_REL_TOL of the largest |logit| (the merged step's matrix products sum
// in another order, so they are close, not bit-identical).
const MERGED_REL_TOL = 1e-5
const W = 12
const prompt = [1, 40, 75, 80, 75, 35, 110, 120]

type Pipeline = Awaited<ReturnType<typeof buildPipeline>>

/** Runs tokens through every stage as one step; returns the last stage's output. */
async function run(pipeline: Pipeline, id: string, tokens: number[], startPos: number, allRows = false) {
  let hidden: Float32Array | undefined
  for (const stage of pipeline.stages) {
    const out = await stage.step(id, {
      ...(stage.isFirst ? { tokens } : { hidden: hidden as Float32Array }),
      seqLen: tokens.length,
      startPos,
      ...(stage.isLast && allRows ? { allRows: true } : {}),
    })
    if (stage.isLast) return out
    hidden = out.hidden
  }
  throw new Error('no last stage')
}

/** Greedy: the prompt, then W single-position steps; the fed tokens and each step's candidates. */
async function singleSteps(pipeline: Pipeline, id: string) {
  const first = (await run(pipeline, id, prompt, 0)).topk as TopKLogits
  const fed = [first.ids[0] as number]
  const steps: TopKLogits[] = []
  for (let i = 0; i < W; i++) {
    const out = (await run(pipeline, id, [fed[i] as number], prompt.length + i)).topk as TopKLogits
    steps.push(out)
    fed.push(out.ids[0] as number)
  }
  return { fed: fed.slice(0, W), steps }
}

const configs: Array<[string, ModelConfig]> = [
  ['synthetic:tiny', syntheticConfig('tiny')],
  ...Object.entries(FAMILY_CONFIGS),
]

describe.each(configs)('%s: allRows on a merged window', (_name, config) => {
  const disposers: Array<() => Promise<void>> = []
  afterAll(async () => {
    await Promise.all(disposers.map((d) => d()))
  })

  test.each([1, 2])('K=%i: per-row argmax ids equal the single steps, values within tolerance', async (k) => {
    const pipeline = await buildPipeline(config, k)
    disposers.push(pipeline.dispose)
    const { fed, steps } = await singleSteps(pipeline, 'single')
    await run(pipeline, 'merged', prompt, 0)
    const merged = await run(pipeline, 'merged', fed, prompt.length, true)
    const rows = merged.rowTopk
    expect(rows?.rows).toBe(W)
    if (rows === undefined) return
    let worst = 0
    for (let r = 0; r < W; r++) {
      const single = steps[r] as TopKLogits
      expect(rows.ids[r * rows.k]).toBe(single.ids[0])
      const scale = Math.max(1, Math.abs(single.values[0] as number))
      for (let j = 0; j < rows.k; j++) {
        worst = Math.max(
          worst,
          Math.abs((rows.values[r * rows.k + j] as number) - (single.values[j] as number)) / scale,
        )
      }
      worst = Math.max(worst, Math.abs((rows.logSumExp[r] as number) - single.logSumExp) / scale)
    }
    console.log(`${_name} K=${k}: worst merged-vs-single relative difference ${worst.toExponential(2)}`)
    expect(worst).toBeLessThan(MERGED_REL_TOL)
    // topk is the last row, as on a normal step.
    expect(Array.from(merged.topk?.ids ?? [])).toEqual(Array.from(rows.ids.subarray((W - 1) * rows.k)))
    // And greedy decoding continues from the merged step as from the single ones.
    expect(merged.topk?.ids[0]).toBe(steps[W - 1]?.ids[0])
  })
})

describe('allRows is for the last stage', () => {
  test('a first stage refuses allRows: true with ERR_STEP_INPUT; a normal step has no rowTopk', async () => {
    const pipeline = await buildPipeline(syntheticConfig('tiny'), 2)
    try {
      const [first, last] = pipeline.stages as [StageSession, StageSession]
      await expect(
        first.step('g', { tokens: [1, 2], seqLen: 2, startPos: 0, allRows: true }),
      ).rejects.toMatchObject({ code: 'ERR_STEP_INPUT' })
      const hidden = (await first.step('g', { tokens: [1, 2], seqLen: 2, startPos: 0 }))
        .hidden as Float32Array
      const out = await last.step('g', { hidden, seqLen: 2, startPos: 0 })
      expect(out.rowTopk).toBeUndefined()
      expect(out.topk?.ids.length).toBeGreaterThan(1)
    } finally {
      await pipeline.dispose()
    }
  })
})

describe('a last-stage fingerprint across a real MessageConnection and stage host', () => {
  const transports: Transport[] = []
  const disposers: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const t of transports) await t.close()
    await Promise.all(disposers.map((d) => d()))
  })

  test('token rows of a window: per-row argmax equals the single-step tokens', async () => {
    const config = FAMILY_CONFIGS.qwen3 as ModelConfig
    const pipeline = await buildPipeline(config, 2)
    disposers.push(pipeline.dispose)
    const { fed, steps } = await singleSteps(pipeline, 'single')
    const [first, last] = pipeline.stages as [StageSession, StageSession]
    const network = new MemoryNetwork()
    const worker = createMemoryTransport({ peerId: 'worker' }, { network })
    const coord = createMemoryTransport({ peerId: 'coord' }, { network })
    transports.push(worker, coord)
    const host = createStageHost(last)
    worker.onIncoming((_from, channel) => host.serve(new MessageConnection(channel)))
    const remote = new RemoteStage(
      {
        peerId: 'worker',
        layerStart: last.layerStart,
        layerEnd: last.layerEnd,
        isFirst: false,
        isLast: true,
        hiddenSize: config.hiddenSize,
        stepTimeoutMs: 30_000,
      },
      new MessageConnection(await coord.dial('worker')),
    )
    const hidden = async (tokens: number[], startPos: number) =>
      (await first.step('remote', { tokens, seqLen: tokens.length, startPos })).hidden as Float32Array
    const prefill = await remote.step('remote', {
      hidden: await hidden(prompt, 0),
      seqLen: prompt.length,
      startPos: 0,
    })
    expect(prefill.topk?.ids[0]).toBe(fed[0])
    const out = await remote.step('remote', {
      hidden: await hidden(fed, prompt.length),
      seqLen: W,
      startPos: prompt.length,
      fingerprint: { challenge: 12345 },
    })
    const rows = out.tokenRows
    expect(rows?.seqLen).toBe(W)
    if (rows === undefined) return
    for (let p = 0; p < W; p++) {
      const token = steps[p]?.ids[0] as number
      expect(rows.ids[2 * p]).toBe(token)
      expect(tokenAgrees(rows, p, token)).toBe(true)
    }
    // The last stage keeps no hidden state for a fetch.
    await expect(remote.fetchHidden('remote', prompt.length)).rejects.toMatchObject({
      code: 'ERR_HIDDEN_UNAVAILABLE',
    })
    host.close()
    await remote.dispose()
  })
})
