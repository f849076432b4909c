import { describe, expect, it } from 'vitest'
import { candidatesNeeded } from '../src/engine/generate.js'
import type { StageSession, StageStepInput } from '../src/engine/inference-backend.js'
import { limitCandidates } from '../src/engine/ort-batch.js'
import { FingerprintingStage } from '../src/mesh/fingerprinting-stage.js'
import { ReplicatedStage } from '../src/mesh/replicated-stage.js'
import { ReputationBook } from '../src/verify/reputation.js'
import { ToleranceTable } from '../src/verify/tolerance.js'
import { connect, fakeStage, input, remote } from './remote-stage-helpers.js'

// StageStepInput.candidates: the coordinator asks the last stage for only as many candidates as
// its draw uses, so fewer bytes come back. What it may ask for, what a stage keeps, and who passes
// the limit on (a remote last stage) or drops it (a fingerprint answer, which has rows of its own).

const topk = { values: Float32Array.of(5, 4, 4, 1), ids: Int32Array.of(9, 2, 3, 0), logSumExp: 5.7 }

describe('limitCandidates', () => {
  it('keeps the first k candidates of every position and the log-sum-exps over the vocabulary', () => {
    const rowTopk = {
      rows: 2,
      k: 4,
      values: Float32Array.of(8, 7, 6, 5, 5, 4, 4, 1),
      ids: Int32Array.of(1, 2, 3, 4, 9, 2, 3, 0),
      logSumExp: Float32Array.of(8.5, 5.7),
    }
    const out = limitCandidates({ topk, rowTopk }, 2)
    expect(out.topk).toEqual({ values: Float32Array.of(5, 4), ids: Int32Array.of(9, 2), logSumExp: 5.7 })
    expect(out.rowTopk).toEqual({
      rows: 2,
      k: 2,
      values: Float32Array.of(8, 7, 5, 4),
      ids: Int32Array.of(1, 2, 9, 2),
      logSumExp: Float32Array.of(8.5, 5.7),
    })
  })

  it('leaves outputs with no more candidates than asked, and hidden outputs, as they are', () => {
    const full = { topk }
    expect(limitCandidates(full, 4)).toBe(full)
    expect(limitCandidates(full, undefined)).toBe(full)
    const hidden = { hidden: Float32Array.of(1, 2) }
    expect(limitCandidates(hidden, 1)).toBe(hidden)
  })
})

describe('candidatesNeeded', () => {
  const cases: Array<[string, Parameters<typeof candidatesNeeded>, number | undefined]> = [
    ['greedy', [{ temperature: 0 }, false], 1],
    ['greedy with a seed', [{ temperature: 0, seed: 3 }, false], 1],
    ['sampled', [{ temperature: 0.8 }, false], undefined],
    ['sampled from the top 5', [{ temperature: 0.8, topK: 5, topP: 0.9 }, false], 5],
    ['greedy with log-probabilities', [{ temperature: 0 }, true], undefined],
    ['greedy with a frequency penalty', [{ temperature: 0, frequencyPenalty: 0.5 }, false], undefined],
    ['greedy with a presence penalty', [{ temperature: 0, presencePenalty: -1 }, false], undefined],
    ['greedy with zero penalties', [{ temperature: 0, frequencyPenalty: 0, presencePenalty: 0 }, false], 1],
    ['greedy with a logit bias', [{ temperature: 0, logitBias: { 7: -100 } }, false], undefined],
    ['greedy with an empty logit bias', [{ temperature: 0, logitBias: {} }, false], 1],
  ]
  for (const [name, args, want] of cases) it(name, () => expect(candidatesNeeded(...args)).toBe(want))
})

/** A stage that records what it was asked. */
function recording(isLast: boolean, seen: StageStepInput[]): StageSession {
  const base = fakeStage(isLast)
  return {
    ...base,
    step(id, i) {
      seen.push(i)
      return base.step(id, i)
    },
  }
}

describe('passing the limit on', () => {
  it('a remote last stage sends it to its peer; a remote middle stage does not', async () => {
    for (const isLast of [true, false]) {
      const seen: StageStepInput[] = []
      const stage = remote(await connect({ stage: recording(isLast, seen) }), { isLast })
      await stage.step('g', { ...input(), candidates: 1 })
      expect(seen.map((s) => s.candidates)).toEqual([isLast ? 1 : undefined])
    }
  })

  it('a fingerprinted last-stage step runs with every candidate (its token rows need two)', async () => {
    const seen: StageStepInput[] = []
    const stage = new FingerprintingStage(recording(true, seen))
    await stage.step('g', { ...input(), candidates: 1, fingerprint: { challenge: 5 } })
    await stage.step('g', { ...input(1), candidates: 1 })
    expect(seen.map((s) => [s.candidates, s.allRows])).toEqual([
      [undefined, true],
      [1, undefined],
    ])
  })
})

describe('a replicated last stage', () => {
  it('asks every replica for all its candidates, whatever the caller needs: votes compare them', async () => {
    const seen: StageStepInput[] = []
    const cls = 'cpu/fp32'
    const stage = new ReplicatedStage(
      { layerStart: 1, layerEnd: 2, isFirst: false, isLast: true, hiddenSize: 4, f: 1, stage: 1 },
      {
        replicas: ['a', 'b', 'c'].map((peerId) => ({ peerId, cls, session: recording(true, seen) })),
        tolerances: new ToleranceTable([
          { a: cls, b: cls, tolerance: { relative: 1e-3, indexOverlap: 0.75 } },
        ]),
        reputation: new ReputationBook(),
        rng: () => 0.5,
      },
    )
    const out = await stage.step('g', { ...input(), candidates: 1 })
    expect(out.topk?.ids).toEqual(Int32Array.of(7, 3))
    expect(seen.length).toBeGreaterThanOrEqual(2)
    for (const s of seen) expect(s.candidates).toBeUndefined()
  })
})
