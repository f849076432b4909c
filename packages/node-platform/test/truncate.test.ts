import {
  createStageHost,
  createWebRtcTransport,
  generateIdentity,
  MemorySignalingHub,
  MessageConnection,
  type ModelConfig,
  type Pipeline,
  RemoteStage,
  type StageSession,
  type StageStepOutput,
  signResult,
} from '@butterfly/core'
import { FAMILY_CONFIGS } from '@butterfly/testing'
import {
  argmax,
  buildPipeline,
  relativeError,
  stepLogits,
  syntheticConfig,
  syntheticWeights,
} from '@butterfly/testing/node'
import { afterAll, describe, expect, test } from 'vitest'
import { createNodeBackend } from '../src/backend/node-backend.js'
import { nodeWrtc } from '../src/mesh/node-wrtc.js'

// KV-cache rollback on onnxruntime-node: after truncate(g, n) a generation continues from
// position n exactly as if it had never gone further. Both runs are fp32 through the same
// graphs, so they agree far below the 1e-4 the engine suites allow against the float64 reference.
const REL_TOL = 1e-5
const DECODE = 6

const configs: Array<[string, ModelConfig]> = [
  ['synthetic:tiny', syntheticConfig('tiny')],
  // Sliding layers read the cache through their own slice (window 8) around a global layer.
  ['gemma3', FAMILY_CONFIGS.gemma3 as ModelConfig],
]

const truncateAll = (p: { stages: StageSession[] }, id: string, length: number) =>
  Promise.all(p.stages.map((s) => s.truncate(id, length)))

/** Greedy decoding from `startPos`, feeding `forced` tokens when given; the logits of every step. */
async function decode(
  pipeline: Pipeline,
  id: string,
  first: Float32Array,
  startPos: number,
  steps: number,
  forced?: readonly number[],
): Promise<{ logits: Float32Array[]; tokens: number[] }> {
  const logits = [first]
  const tokens: number[] = []
  let last = first
  for (let i = 0; i < steps; i++) {
    const token = forced?.[i] ?? argmax(last)
    tokens.push(token)
    last = await stepLogits(pipeline, id, [token], startPos + i)
    logits.push(last)
  }
  return { logits, tokens }
}

function expectClose(actual: readonly Float32Array[], expected: readonly Float32Array[]): void {
  expect(actual.length).toBe(expected.length)
  actual.forEach((a, i) => {
    expect(relativeError(a, expected[i] as Float32Array), `step ${i}`).toBeLessThan(REL_TOL)
    expect(argmax(a), `step ${i}`).toBe(argmax(expected[i] as Float32Array))
  })
}

for (const [name, config] of configs) {
  describe(`OrtStage.truncate (${name}, 2 stages)`, () => {
    const prompt = [1, 40, 75, 80, 75, 35, 110, 120, 7, 9, 11, 13]
    const disposers: Array<() => Promise<void>> = []
    afterAll(async () => {
      await Promise.all(disposers.map((d) => d()))
    })
    const pipeline = async () => {
      const p = await buildPipeline(config, 2, { emitLogits: true })
      disposers.push(p.dispose)
      return p
    }

    test('re-running the steps after a rollback gives the first run again', async () => {
      const p = await pipeline()
      const first = await stepLogits(p, 'g', prompt, 0)
      const run = await decode(p, 'g', first, prompt.length, DECODE)
      // Keep the prompt and two decoded tokens; regenerate the rest.
      const keep = prompt.length + 2
      await truncateAll(p, 'g', keep)
      const again = await decode(p, 'g', run.logits[2] as Float32Array, keep, DECODE - 2)
      expect(again.tokens).toEqual(run.tokens.slice(2))
      expectClose(again.logits, run.logits.slice(2))
      // All the way back: the prompt again from 0.
      await truncateAll(p, 'g', 0)
      const restart = await stepLogits(p, 'g', prompt, 0)
      const replay = await decode(p, 'g', restart, prompt.length, DECODE)
      expect(replay.tokens).toEqual(run.tokens)
      expectClose(replay.logits, run.logits)
    })

    test('continuing with other tokens after a rollback equals a fresh generation fed them', async () => {
      const p = await pipeline()
      const first = await stepLogits(p, 'g', prompt, 0)
      await decode(p, 'g', first, prompt.length, DECODE)
      // Back into the prompt, behind the window of the sliding layers.
      const keep = prompt.length - 3
      const other = [100, 3, 57, 21, 88, 64, 5]
      await truncateAll(p, 'g', keep)
      const rolled = await stepLogits(p, 'g', [other[0] as number], keep)
      const cont = await decode(p, 'g', rolled, keep + 1, other.length - 1, other.slice(1))

      await stepLogits(p, 'fresh', prompt.slice(0, keep), 0)
      const fresh = await stepLogits(p, 'fresh', [other[0] as number], keep)
      const freshRun = await decode(p, 'fresh', fresh, keep + 1, other.length - 1, other.slice(1))
      expectClose(cont.logits, freshRun.logits)
    })

    test('a rollback waits for the steps already asked of the stage', async () => {
      const p = await pipeline()
      const stage = p.stages[0] as StageSession
      // Not awaited: the truncate is asked while the prefill is queued or running.
      const prefill = stage.step('q', { tokens: prompt, seqLen: prompt.length, startPos: 0 })
      const rolled = stage.truncate('q', 4)
      await prefill
      await rolled
      const next = await stage.step('q', { tokens: [prompt[4] as number], seqLen: 1, startPos: 4 })
      await expect(
        stage.step('q', { tokens: [1], seqLen: 1, startPos: prompt.length + 1 }),
      ).rejects.toMatchObject({ code: 'ERR_STEP_ORDER' })
      const fresh = await stage.step('q2', { tokens: prompt.slice(0, 5), seqLen: 5, startPos: 0 })
      const h = config.hiddenSize
      const last = (fresh.hidden as Float32Array).subarray(4 * h, 5 * h)
      expect(relativeError(next.hidden as Float32Array, last)).toBeLessThan(REL_TOL)
    })

    test('bad lengths fail with ERR_TRUNCATE; unknown generations and longer lengths are no-ops', async () => {
      const p = await pipeline()
      const [a, b] = p.stages as [StageSession, StageSession]
      await stepLogits(p, 'g', prompt.slice(0, 4), 0)
      for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
        for (const stage of [a, b]) {
          await expect(stage.truncate('g', bad)).rejects.toMatchObject({
            name: 'GenerationError',
            code: 'ERR_TRUNCATE',
          })
        }
      }
      const active = a.activeGenerations
      await truncateAll(p, 'unknown', 0)
      expect(a.activeGenerations).toBe(active)
      // Past the end: the cache still holds 4 positions, so the next step starts at 4.
      await truncateAll(p, 'g', 100)
      await expect(stepLogits(p, 'g', [5], 100)).rejects.toMatchObject({ code: 'ERR_STEP_ORDER' })
      const fourth = await stepLogits(p, 'g', [prompt[4] as number], 4)
      const whole = await stepLogits(p, 'whole', prompt.slice(0, 5), 0)
      expect(relativeError(fourth, whole)).toBeLessThan(REL_TOL)
      // An unknown generation starts fresh at 0, as it would without the truncate.
      expect((await stepLogits(p, 'unknown', [1], 0)).length).toBe(config.vocabSize)
    })
  })
}

describe('truncate over WebRTC (node-datachannel) to a stage host on onnxruntime-node', () => {
  test('a signed RemoteStage rolls back, replays identically, and the old position is refused', async () => {
    const config = syntheticConfig('tiny')
    const whole = { config, layerStart: 0, layerEnd: config.numLayers, topK: 8 }
    const local = await createNodeBackend({ threads: 1 }).createStage(whole, syntheticWeights(config))
    const identity = generateIdentity()
    const host = createStageHost(local, { sign: (f) => signResult(identity, { ...f, mesh: 'm' }) })
    const hub = new MemorySignalingHub()
    const wrtc = nodeWrtc('node-datachannel', { loopbackOnly: true })
    const worker = createWebRtcTransport({ peerId: 'worker' }, { signaling: hub.connect('worker'), wrtc })
    const coord = createWebRtcTransport({ peerId: 'coord' }, { signaling: hub.connect('coord'), wrtc })
    worker.onIncoming((_from, channel) => {
      host.serve(new MessageConnection(channel))
    })
    const stage = new RemoteStage(
      {
        peerId: 'worker',
        layerStart: 0,
        layerEnd: config.numLayers,
        isFirst: true,
        isLast: true,
        hiddenSize: config.hiddenSize,
        stepTimeoutMs: 30_000,
        verifyKey: identity.publicKey,
        mesh: 'm',
      },
      new MessageConnection(await coord.dial('worker', AbortSignal.timeout(20_000))),
    )
    try {
      const prompt = [1, 40, 75, 80, 75, 35, 110, 120]
      const stepAt = (tokens: number[], startPos: number) =>
        stage.step('g', { tokens, seqLen: tokens.length, startPos })
      const greedy = async (first: StageStepOutput, startPos: number, steps: number) => {
        const outs = [first]
        for (let i = 0; i < steps; i++) {
          const token = outs[i]?.topk?.ids[0] as number
          outs.push(await stepAt([token], startPos + i))
        }
        return outs
      }
      const run = await greedy(await stepAt(prompt, 0), prompt.length, DECODE)
      const keep = prompt.length + 1
      await stage.truncate('g', keep)
      await expect(stepAt([1], prompt.length + DECODE)).rejects.toMatchObject({ code: 'ERR_STEP_ORDER' })
      const again = await greedy(run[1] as StageStepOutput, keep, DECODE - 1)
      again.forEach((out, i) => {
        const want = run[i + 1]?.topk
        expect(Array.from(out.topk?.ids ?? [])).toEqual(Array.from(want?.ids ?? []))
        expect(relativeError(out.topk?.values as Float32Array, want?.values as Float32Array)).toBeLessThan(
          REL_TOL,
        )
      })
      expect(local.activeGenerations).toBe(1)
    } finally {
      await stage.dispose()
      host.close()
      await Promise.all([coord.close(), worker.close()])
      await local.dispose()
    }
  })
})
