import {
  calibrationTokens,
  ReputationBook,
  referenceBoundaries,
  type StageSession,
  type StageStepInput,
  type StageStepOutput,
} from '@butterfly/core'
import { createNodeBackend } from '@butterfly/node-platform'
import { DelegatingStage, FaultyStage } from '@butterfly/testing'
import { syntheticConfig, syntheticWeights } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { StageCalibrator } from '../src/gateway/stage-calibrator.js'

// Join-time calibration of real onnxruntime-node stages of the synthetic 'tiny' model against
// the float64 boundaries, with replicas that lie only on the calibration input.
const config = syntheticConfig('tiny')
const tokens = calibrationTokens(config)
const stages: StageSession[] = []
let boundaries: Float32Array[]

async function build(dtype: 'F32' | 'F16', start: number, end: number): Promise<StageSession> {
  const s = await createNodeBackend({ threads: 1 }).createStage(
    { config, layerStart: start, layerEnd: end },
    syntheticWeights(config, dtype),
  )
  stages.push(s)
  return s
}

/** A replica that computes the calibration from another input than the one it was given. */
class Tampering extends DelegatingStage {
  override step(id: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    const changed =
      input.tokens !== undefined
        ? { tokens: [...input.tokens.slice(0, -1), 3] }
        : { hidden: (input.hidden as Float32Array).map((v, i) => v * (1 + 0.01 * Math.sin(i))) }
    return this.inner.step(id, { ...input, ...changed }, signal)
  }
}

beforeAll(async () => {
  boundaries = await referenceBoundaries(config, syntheticWeights(config, 'F32'), tokens)
}, 120_000)

afterAll(async () => {
  await Promise.all(stages.map((s) => s.dispose()))
})

describe('StageCalibrator against liars on the calibration input', () => {
  it.each([
    ['first stage [0, 2)', 0, 2],
    ['middle stage [1, 3)', 1, 3],
  ])('%s: the liars are refused and recorded, the honest replicas pass', async (_n, start, end) => {
    const reputation = new ReputationBook()
    const calibrator = new StageCalibrator({
      boundaries: async () => boundaries,
      tokens,
      hiddenSize: config.hiddenSize,
      reputation,
    })
    const calibration = start === 0 ? { tokens } : { hidden: boundaries[start] as Float32Array }
    const liar = (dtype: 'F32' | 'F16', noise: number, seed: number) =>
      build(dtype, start, end).then(
        (s) => new FaultyStage(s, { mode: 'noise', noise, seed, phase: 'calibration', calibration }),
      )
    const replicas = [
      { peerId: 'fp32-a', cls: 'cpu/fp32', session: await build('F32', start, end) },
      { peerId: 'fp32-b', cls: 'cpu/fp32', session: await build('F32', start, end) },
      { peerId: 'fp32-liar', cls: 'cpu/fp32', session: await liar('F32', 0.02, 3) },
      { peerId: 'fp16w-a', cls: 'cpu/fp16w', session: await build('F16', start, end) },
      { peerId: 'fp16w-b', cls: 'cpu/fp16w', session: await build('F16', start, end) },
      { peerId: 'fp16w-liar', cls: 'cpu/fp16w', session: await liar('F16', 0.005, 4) },
      { peerId: 'tamper', cls: 'cpu/fp16w', session: new Tampering(await build('F16', start, end)) },
    ]
    const result = await calibrator.calibrate({ start, end, isFirst: start === 0 }, replicas)
    expect(result.calibrated.map((r) => r.peerId)).toEqual(['fp32-a', 'fp32-b', 'fp16w-a', 'fp16w-b'])
    expect(result.rejected.map((r) => r.peerId).sort()).toEqual(['fp16w-liar', 'fp32-liar', 'tamper'])
    const book = new Map(reputation.snapshot().peers.map((p) => [p.peerId, p.disagreements]))
    expect(Object.fromEntries(book)).toEqual({ 'fp16w-liar': 1, 'fp32-liar': 1, tamper: 1 })
    // Wrong against the exact answer: proven, so flagged at once (and excluded from the next plan).
    for (const id of ['fp16w-liar', 'fp32-liar', 'tamper'])
      expect(reputation.get(id)?.flagReason).toBe('proven')
    for (const id of ['fp32-a', 'fp32-b', 'fp16w-a', 'fp16w-b']) expect(reputation.isFlagged(id)).toBe(false)
    // The liars lied on the calibration step, under an id like any served generation's.
    for (const r of replicas.filter((x) => x.session instanceof FaultyStage)) {
      const calls = (r.session as FaultyStage).calls
      expect(calls.map((c) => c.lied)).toEqual([true])
      expect(calls[0]?.generationId).toMatch(/^g[0-9a-f]{16}$/)
    }
    // Tolerances are those of the honest replicas alone.
    const honest = await new StageCalibrator({
      boundaries: async () => boundaries,
      tokens,
      hiddenSize: config.hiddenSize,
      reputation: new ReputationBook(),
    }).calibrate({ start, end, isFirst: start === 0 }, result.calibrated)
    for (const [a, b] of [
      ['cpu/fp32', 'cpu/fp32'],
      ['cpu/fp16w', 'cpu/fp16w'],
      ['cpu/fp32', 'cpu/fp16w'],
    ] as const)
      expect(result.table.get(a, b)).toEqual(honest.table.get(a, b))
  })
})
