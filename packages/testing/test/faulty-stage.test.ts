import {
  ShapedStage,
  type StageSession,
  type StageStepInput,
  type StageStepOutput,
  type TopKLogits,
} from '@butterfly/core'
import { describe, expect, it } from 'vitest'
import { FaultOptionsError } from '../src/errors.js'
import { parseFaultOptions } from '../src/faulty-backend.js'
import { type FaultOptions, type FaultPhase, FaultyStage } from '../src/faulty-stage.js'

const H = 8
const CAL_TOKENS = [1, 7920, 15839, 5, 9, 33, 100, 200].map((t) => t % 259)

/** A deterministic fake stage: row r of the output depends on (input row, position). */
class FakeStage extends ShapedStage implements StageSession {
  readonly activeGenerations = 0
  constructor(isFirst: boolean, isLast: boolean) {
    super({ layerStart: isFirst ? 0 : 1, layerEnd: isLast ? 4 : 2, isFirst, isLast })
  }
  async step(_id: string, input: StageStepInput): Promise<StageStepOutput> {
    const rows = Array.from({ length: input.seqLen }, (_, r) => {
      const seed = input.tokens?.[r] ?? (input.hidden?.[r * H] as number)
      return Array.from({ length: H }, (_, i) => Math.sin(seed + i + input.startPos + r) + 0.1 * i)
    })
    if (!this.isLast) return { hidden: Float32Array.from(rows.flat()) }
    const last = rows[rows.length - 1] as number[]
    const order = [...last.keys()].sort((a, b) => (last[b] as number) - (last[a] as number))
    return {
      topk: {
        values: Float32Array.from(order, (i) => last[i] as number),
        ids: Int32Array.from(order, (i) => i + 10),
        logSumExp: 3,
      },
    }
  }
  endGeneration(): void {}
  async truncate(): Promise<void> {}
  async dispose(): Promise<void> {}
}

const first = () => new FakeStage(true, false)
const middle = () => new FakeStage(false, false)
const last = () => new FakeStage(false, true)
const honest = (s: StageSession, id: string, input: StageStepInput) => s.step(id, input)

function wellFormed(out: StageStepOutput, like: StageStepOutput): void {
  if (like.hidden !== undefined) {
    expect(out.hidden?.length).toBe(like.hidden.length)
    expect((out.hidden as Float32Array).every(Number.isFinite)).toBe(true)
  } else {
    const t = out.topk as TopKLogits
    const l = like.topk as TopKLogits
    expect([t.values.length, t.ids.length]).toEqual([l.values.length, l.ids.length])
    expect(t.values.every(Number.isFinite) && Number.isFinite(t.logSumExp)).toBe(true)
    for (let i = 1; i < t.values.length; i++)
      expect(t.values[i] as number).toBeLessThanOrEqual(t.values[i - 1] as number)
  }
}

const differs = (a: StageStepOutput, b: StageStepOutput) =>
  a.hidden !== undefined
    ? a.hidden.some((v, i) => v !== b.hidden?.[i])
    : (a.topk as TopKLogits).ids[0] !== (b.topk as TopKLogits).ids[0] ||
      (a.topk as TopKLogits).values.some((v, i) => v !== b.topk?.values[i])

const prefill = { tokens: [3, 4, 5], seqLen: 3, startPos: 0 }
const decode = (pos: number) => ({ tokens: [pos % 200], seqLen: 1, startPos: pos })
const hiddenIn = (seqLen: number, c = 0.3) => Float32Array.from({ length: seqLen * H }, (_, i) => c + i / 7)

describe('FaultyStage patient liars', () => {
  it.each([
    ['first', first],
    ['middle', middle],
    ['last', last],
  ])("'collude' on a %s stage: the same seed tells the bit-identical well-formed lie", async (_n, make) => {
    const opts: FaultOptions = { mode: 'collude', seed: 7, noise: 0.05 }
    const a = new FaultyStage(make(), opts)
    const b = new FaultyStage(make(), opts)
    const c = new FaultyStage(make(), { ...opts, seed: 8 })
    // b has served other steps first: the lie depends on (seed, position), not on history.
    await b.step('warm', decode(40))
    const input = make().isFirst ? prefill : { hidden: hiddenIn(3), seqLen: 3, startPos: 5 }
    const truth = await honest(make(), 'x', input)
    const [la, lb, lc] = await Promise.all([a.step('g1', input), b.step('g2', input), c.step('g3', input)])
    wellFormed(la, truth)
    expect(differs(la, truth)).toBe(true)
    expect(differs(la, lb)).toBe(false)
    if (la.topk !== undefined) {
      // Both name the same wrong token: the honest runner-up.
      expect(la.topk.ids[0]).toBe(truth.topk?.ids[1])
      expect(lb.topk?.ids[0]).toBe(truth.topk?.ids[1])
    } else expect(differs(la, lc)).toBe(true)
  })

  it('honestSteps counts the steps served across generations, calibration included', async () => {
    const s = new FaultyStage(first(), { mode: 'noise', honestSteps: 5, seed: 2 })
    await s.step('calibration', { tokens: CAL_TOKENS, seqLen: 8, startPos: 0 })
    s.endGeneration('calibration')
    for (const g of ['g1', 'g2']) {
      await s.step(g, prefill)
      for (let p = 3; p < 6; p++) await s.step(g, decode(p))
    }
    expect(s.calls.map((c) => c.lied)).toEqual([false, false, false, false, false, true, true, true, true])
  })

  it('lieRate p lies on about p of 1000 steps, and each lie is well-formed', async () => {
    for (const p of [0.02, 0.3]) {
      const s = new FaultyStage(middle(), { mode: 'noise', lieRate: p, seed: 5 })
      for (let i = 0; i < 1000; i++) {
        const input = { hidden: hiddenIn(1, i), seqLen: 1, startPos: i }
        const out = await s.step('g', input)
        if (s.calls[i]?.lied) {
          const truth = await honest(middle(), 'x', input)
          wellFormed(out, truth)
          expect(differs(out, truth)).toBe(true)
        }
      }
      const lies = s.calls.filter((c) => c.lied).length
      // Binomial(1000, p): within 4 standard deviations (+-8.9 at 0.02, +-58 at 0.3).
      expect(Math.abs(lies - 1000 * p)).toBeLessThanOrEqual(4 * Math.sqrt(1000 * p * (1 - p)))
    }
  })

  it('phase: prefill, decode (merged replays included), calibration (by content), all', async () => {
    const steps: StageStepInput[] = [
      { tokens: CAL_TOKENS, seqLen: 8, startPos: 0 }, // calibration
      prefill, // prefill
      decode(3), // decode
      { tokens: [7, 8, 9, 10], seqLen: 4, startPos: 4 }, // merged replay: decode
      { tokens: CAL_TOKENS.slice(0, 7).concat(8), seqLen: 8, startPos: 0 }, // other tokens: prefill
    ]
    const lied = async (phase: FaultPhase) => {
      const s = new FaultyStage(first(), { mode: 'zero', phase, calibration: { tokens: CAL_TOKENS } })
      for (const [i, input] of steps.entries()) await s.step(`g${i}`, input)
      return s.calls.map((c) => c.lied)
    }
    expect(await lied('calibration')).toEqual([true, false, false, false, false])
    expect(await lied('prefill')).toEqual([false, true, false, false, true])
    expect(await lied('decode')).toEqual([false, false, true, true, false])
    expect(await lied('all')).toEqual([true, true, true, true, true])
    // A later stage knows the calibration input by its hidden state (the boundary state).
    const boundary = hiddenIn(8)
    const s = new FaultyStage(middle(), {
      mode: 'noise',
      phase: 'calibration',
      calibration: { hidden: boundary },
    })
    const near = boundary.map((v, i) => v * (1 + 1e-3 * Math.sin(i)))
    for (const hidden of [near, hiddenIn(8, 5)]) await s.step('c', { hidden, seqLen: 8, startPos: 0 })
    expect(s.calls.map((c) => c.lied)).toEqual([true, false])
  })

  it('leaves the old modes as they were: lies from fromStep of each generation', async () => {
    const s = new FaultyStage(first(), { mode: 'noise', fromStep: 1 })
    for (const g of ['a', 'b']) for (const input of [prefill, decode(3)]) await s.step(g, input)
    expect(s.calls.map((c) => c.lied)).toEqual([false, true, false, true])
  })

  it.each<[string, FaultOptions, boolean]>([
    ['lieRate over 1', { mode: 'noise', lieRate: 1.5 }, true],
    ['negative honestSteps', { mode: 'noise', honestSteps: -1 }, true],
    ['phase calibration without its input', { mode: 'noise', phase: 'calibration' }, true],
    ['a bad phase', { mode: 'noise', phase: 'sometimes' as never }, true],
  ])('refuses %s', (_n, opts) => {
    expect(() => new FaultyStage(first(), opts)).toThrow(FaultOptionsError)
  })
})

describe('parseFaultOptions (the faulty worker argument)', () => {
  it('accepts the options and passes them through', () => {
    const o = { mode: 'noise', phase: 'calibration', noise: 0.02, honestSteps: 3, lieRate: 0.1, seed: 4 }
    expect(parseFaultOptions(JSON.stringify(o))).toEqual(o)
  })
  it.each([
    ['not JSON', '{'],
    ['an array', '[]'],
    ['a bad mode', '{"mode":"lie"}'],
    ['a bad phase', '{"mode":"noise","phase":"x"}'],
    ['an unknown key', '{"mode":"noise","extra":1}'],
    ['a negative number', '{"mode":"noise","seed":-1}'],
    ['a string number', '{"mode":"noise","seed":"1"}'],
    ['lieRate over 1', '{"mode":"noise","lieRate":2}'],
    ['over 4 KiB', `{"mode":"noise","x":"${'a'.repeat(5000)}"}`],
  ])('refuses %s', (_n, json) => {
    try {
      parseFaultOptions(json)
      expect.unreachable()
    } catch (err) {
      expect((err as FaultOptionsError).code).toBe('ERR_FAULT_OPTIONS')
    }
  })
})
