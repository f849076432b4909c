import { describe, expect, it } from 'vitest'
import type { StageStepInput } from '../src/engine/inference-backend.js'
import { mergeSteps } from '../src/mesh/replication/replica-set.js'

const hiddenStep = (startPos: number, seqLen: number, h = 2): StageStepInput => ({
  hidden: Float32Array.from({ length: seqLen * h }, (_, i) => startPos * 10 + i),
  seqLen,
  startPos,
})

describe('mergeSteps (catch-up replay)', () => {
  it('merges consecutive steps into one chunk with their inputs in order', () => {
    const steps = [hiddenStep(0, 3), hiddenStep(3, 1), hiddenStep(4, 1)]
    const [chunk, ...rest] = mergeSteps(steps)
    expect(rest).toEqual([])
    expect(chunk?.steps).toBe(3)
    expect(chunk?.input.startPos).toBe(0)
    expect(chunk?.input.seqLen).toBe(5)
    expect(Array.from(chunk?.input.hidden ?? [])).toEqual([0, 1, 2, 3, 4, 5, 30, 31, 40, 41])
  })

  it('merges token steps, keeps the last temperature, and never mixes tokens with hidden states', () => {
    const steps: StageStepInput[] = [
      { tokens: [1, 2], seqLen: 2, startPos: 0 },
      { tokens: [3], seqLen: 1, startPos: 2, temperature: 0.7 },
    ]
    expect(mergeSteps(steps)).toEqual([
      { input: { tokens: [1, 2, 3], seqLen: 3, startPos: 0, temperature: 0.7 }, steps: 2 },
    ])
    const mixed = mergeSteps([steps[0] as StageStepInput, hiddenStep(2, 1)])
    expect(mixed.map((c) => c.steps)).toEqual([1, 1])
  })

  it('starts a new chunk past maxPositions and leaves a longer step whole', () => {
    const steps = [hiddenStep(0, 4), hiddenStep(4, 1), hiddenStep(5, 1), hiddenStep(6, 9), hiddenStep(15, 1)]
    const chunks = mergeSteps(steps, 5)
    expect(chunks.map((c) => [c.input.startPos, c.input.seqLen, c.steps])).toEqual([
      [0, 5, 2],
      [5, 1, 1],
      [6, 9, 1],
      [15, 1, 1],
    ])
    expect(mergeSteps([])).toEqual([])
  })
})
