import { beforeAll, describe, expect, it } from 'vitest'
import { calibrate } from '../src/verify/calibration.js'
import { compareHidden, compareToFingerprint } from '../src/verify/compare-hidden.js'
import { fingerprintHidden } from '../src/verify/fingerprint.js'
import { type Tolerance, ToleranceTable } from '../src/verify/tolerance.js'
import { expectVerifyError, Gaussian, noisy, StageClasses } from './verify-helpers.js'

// A 4-layer stage of the synthetic 10m model (hidden size 320). At join every class computes the
// calibration prompt; at run time a different prompt is prefilled and then decoded step by step.
const CAL_PROMPT = [5, 17, 300, 42, 7, 99, 1000, 3]
const PROMPT = [11, 12, 13, 2000, 4000]
const DECODE = [[77], [78], [79]]
// Summation order differs between machines of one class: ~1e-6 relative for fp32 arithmetic.
const MACHINE_NOISE = 1e-6

type Cls = 'cpu/fp32' | 'cpu/fp16w' | 'webgpu/fp16'
const CLASSES: Cls[] = ['cpu/fp32', 'cpu/fp16w', 'webgpu/fp16']

let stage: StageClasses
let h: number
let table: ToleranceTable
/** Per class: the outputs of the run-time steps (prefill then decode). */
const outputs = new Map<Cls, Float32Array[]>()
/** fp16w replica's outputs of layers [0, 3) instead of [0, 4): another layer's output. */
let otherLayer: Float32Array[]
/** Each class's honest output for the calibration prompt, and the exact (fp32 reference) one. */
let cal: Map<Cls, Float32Array>
let calRef: Float32Array

beforeAll(() => {
  stage = new StageClasses('10m', 4)
  h = stage.hiddenSize
  const g = new Gaussian(1)
  cal = new Map(CLASSES.map((cls) => [cls, stage.replica(cls)(CAL_PROMPT)]))
  const reference = cal.get('cpu/fp32') as Float32Array
  calRef = reference
  const samples = CLASSES.flatMap((cls) => {
    const x = cal.get(cls) as Float32Array
    return [
      { cls, hidden: x },
      { cls, hidden: noisy(g, x, h, MACHINE_NOISE) },
    ]
  })
  const result = calibrate(samples, reference, { hiddenSize: h })
  expect(result.rejected).toEqual([])
  table = result.table
  for (const cls of CLASSES) {
    const run = stage.replica(cls)
    outputs.set(cls, [run(PROMPT), ...DECODE.map((ids) => run(ids))])
  }
  const run = stage.replica('cpu/fp16w', 3)
  otherLayer = [run(PROMPT), ...DECODE.map((ids) => run(ids))]
})

const steps = () => outputs.get('cpu/fp32')?.map((x) => x.length / h) ?? []
const out = (cls: Cls, step: number) => outputs.get(cls)?.[step] as Float32Array

describe('calibrated tolerances', () => {
  it('are the floor for fp32, wider for fp16 classes, and keep the classes apart', () => {
    expect(table.get('cpu/fp32', 'cpu/fp32').relative).toBe(1e-4)
    const w16 = table.get('cpu/fp16w', 'cpu/fp16w').relative
    const gpu = table.get('webgpu/fp16', 'webgpu/fp16').relative
    expect(w16).toBeGreaterThan(1e-4)
    expect(w16).toBeLessThan(0.05)
    expect(gpu).toBeGreaterThanOrEqual(w16)
    expect(table.get('cpu/fp32', 'cpu/fp16w')).toEqual(table.get('cpu/fp16w', 'cpu/fp32'))
    for (const cls of CLASSES) expect(table.homogeneous(cls, cls)).toBe(true)
    expect(table.homogeneous('cpu/fp32', 'cpu/fp16w')).toBe(false)
    expect(table.homogeneous('cpu/fp32', 'webgpu/fp16')).toBe(false)
    expect(table.homogeneous('cpu/fp32', 'cuda/fp16')).toBe(false)
    expect(table.homogeneousGroups(['cpu/fp32', 'cpu/fp16w', 'cpu/fp32'])).toEqual([
      ['cpu/fp32'],
      ['cpu/fp16w'],
    ])
  })

  it('honest fp32 replicas on different machines agree', () => {
    const g = new Gaussian(2)
    const tol = table.get('cpu/fp32', 'cpu/fp32')
    steps().forEach((seqLen, s) => {
      const a = out('cpu/fp32', s)
      const b = noisy(g, a, h, MACHINE_NOISE)
      expect(compareHidden(a, b, h, tol).agree).toBe(true)
      expect(compareToFingerprint(a, fingerprintHidden(b, seqLen, h, 16, { challenge: s }), tol).agree).toBe(
        true,
      )
      expect(compareToFingerprint(b, fingerprintHidden(a, seqLen, h, 16, { challenge: s }), tol).agree).toBe(
        true,
      )
    })
  })

  it('honest fp16-weight noise stays within its calibrated tolerance on new inputs', () => {
    const g = new Gaussian(3)
    for (const cls of ['cpu/fp16w', 'webgpu/fp16'] as const) {
      const tol = table.get(cls, cls)
      steps().forEach((seqLen, s) => {
        const exact = out('cpu/fp32', s)
        const x = out(cls, s)
        // The class's deviation from the exact output is what its tolerance was calibrated on.
        const dev = compareHidden(x, exact, h, tol)
        expect(dev.deviation).toBeGreaterThan(0)
        expect(dev.agree).toBe(true)
        expect(dev.score).toBeLessThan(0.5)
        const peer = noisy(g, x, h, MACHINE_NOISE)
        expect(
          compareToFingerprint(x, fingerprintHidden(peer, seqLen, h, 16, { challenge: 9 + s }), tol).agree,
        ).toBe(true)
      })
    }
  })

  it('an fp32 replica that quietly computes with fp16 weights is caught under the fp32 tolerance', () => {
    const tol = table.get('cpu/fp32', 'cpu/fp32')
    steps().forEach((seqLen, s) => {
      const lazy = out('cpu/fp16w', s)
      expect(compareHidden(lazy, out('cpu/fp32', s), h, tol).agree).toBe(false)
      expect(compareToFingerprint(out('cpu/fp32', s), fingerprintHidden(lazy, seqLen, h), tol).agree).toBe(
        false,
      )
    })
  })

  it('catches every kind of lie against an honest fp16w replica, both as primary and as fingerprint', () => {
    const g = new Gaussian(4)
    const tol = table.get('cpu/fp16w', 'cpu/fp16w')
    for (let s = 1; s < steps().length; s++) {
      const seqLen = steps()[s] as number
      const honest = out('cpu/fp16w', s)
      const previous = out('cpu/fp16w', s - 1)
      const lies: Record<string, Float32Array> = {
        'noise 10x tolerance': noisy(g, honest, h, 10 * tol.relative),
        zeroed: new Float32Array(honest.length),
        'stale (previous step)': previous.slice(previous.length - h),
        'another layer': otherLayer[s] as Float32Array,
        random: g.array(honest.length),
        'sign flipped': honest.map((v) => -v),
      }
      for (const [kind, lie] of Object.entries(lies)) {
        const asPrimary = compareToFingerprint(
          lie,
          fingerprintHidden(honest, seqLen, h, 16, { challenge: 5 }),
          tol,
        )
        const asFingerprint = compareToFingerprint(
          honest,
          fingerprintHidden(lie, seqLen, h, 16, { challenge: 6 }),
          tol,
        )
        const full = compareHidden(lie, honest, h, tol)
        expect([kind, asPrimary.agree, asFingerprint.agree, full.agree]).toEqual([kind, false, false, false])
      }
    }
  })
})

describe('calibration against liars that lie only on the calibration input', () => {
  /** n honest samples of each class: its output with machine noise (the first one exact). */
  const honest = (classes: readonly Cls[], n: number, seed: number) => {
    const g = new Gaussian(seed)
    return classes.flatMap((cls) =>
      Array.from({ length: n }, (_, i) => {
        const x = cal.get(cls) as Float32Array
        return { cls, hidden: i === 0 ? x : noisy(g, x, h, MACHINE_NOISE), peerId: `${cls}-${i}` }
      }),
    )
  }
  const pairs = (classes: readonly Cls[]) => classes.flatMap((a) => classes.map((b) => [a, b] as const))

  it.each<[Cls, number, number]>([
    ['cpu/fp32', 0.02, 3],
    ['cpu/fp32', 0.005, 3],
    ['cpu/fp32', 0.005, 1],
    ['cpu/fp16w', 0.02, 3],
    ['cpu/fp16w', 0.005, 3],
    ['cpu/fp16w', 0.005, 1],
    ['webgpu/fp16', 0.005, 2],
  ])(
    'a %s liar with relative noise %s among %i honest samples per class is rejected, tolerances unchanged',
    (cls, rel, n) => {
      const classes: Cls[] = ['cpu/fp32', 'cpu/fp16w', 'webgpu/fp16']
      const samples = honest(classes, n, 11)
      const clean = calibrate(samples, calRef, { hiddenSize: h })
      expect(clean.rejected).toEqual([])
      const lie = noisy(new Gaussian(12), cal.get(cls) as Float32Array, h, rel)
      const withLiar = calibrate([...samples, { cls, hidden: lie, peerId: 'liar' }], calRef, {
        hiddenSize: h,
      })
      expect(withLiar.rejected.map((r) => [r.peerId, r.reason.split(' ')[0]])).toEqual([['liar', 'deviates']])
      for (const [a, b] of pairs(classes)) expect(withLiar.table.get(a, b)).toEqual(clean.table.get(a, b))
      // The old rule (reject only over maxDeviation = 0.05 from the reference) accepted it.
      expect(compareHidden(lie, calRef, h, { relative: 1, indexOverlap: 0 }).deviation).toBeLessThan(0.05)
    },
  )

  it('an honest class of many peers passes whole, with its tolerance from the median deviation', () => {
    const samples = honest(['cpu/fp16w'], 6, 13)
    const { rejected, table: t, observed } = calibrate(samples, calRef, { hiddenSize: h })
    expect(rejected).toEqual([])
    const devs = samples.map(
      (s) => compareHidden(s.hidden, calRef, h, { relative: 1, indexOverlap: 0 }).deviation,
    )
    const sorted = [...devs].sort((a, b) => a - b)
    expect(observed[0]?.deviation).toBeCloseTo(sorted[2] as number, 12)
    expect(t.get('cpu/fp16w', 'cpu/fp16w').relative).toBeCloseTo(4 * (sorted[2] as number), 12)
  })

  it('a class with a single sample is bounded by its absolute cap', () => {
    const g = new Gaussian(14)
    const one = (cls: Cls, rel: number) =>
      calibrate([{ cls, hidden: noisy(g, cal.get(cls) as Float32Array, h, rel), peerId: 'p' }], calRef, {
        hiddenSize: h,
      })
    // Honest: accepted, tolerance 4x its deviation (fp32 at the floor).
    expect(one('cpu/fp16w', MACHINE_NOISE).rejected).toEqual([])
    expect(one('cpu/fp32', MACHINE_NOISE).table.get('cpu/fp32', 'cpu/fp32').relative).toBe(1e-4)
    // Over the cap (fp32 1e-4, fp16w 1e-2, fp16 2e-2): refused, the class gets no entry.
    for (const [cls, rel] of [
      ['cpu/fp32', 0.005],
      ['cpu/fp16w', 0.02],
      ['webgpu/fp16', 0.04],
    ] as const) {
      const r = one(cls, rel)
      expect([cls, r.rejected.map((x) => x.reason.includes('cap'))]).toEqual([cls, [true]])
      expect(r.table.classes()).toEqual([])
    }
    // Under the cap, alone, it cannot be told from honest: its tolerance is bounded by 4 x cap.
    expect(one('cpu/fp16w', 0.005).table.get('cpu/fp16w', 'cpu/fp16w').relative).toBeLessThanOrEqual(4e-2)
  })

  it('a replica that computed the calibration from other tokens is refused', () => {
    const other = stage.replica('cpu/fp16w')([...CAL_PROMPT.slice(0, 7), 8])
    const samples = [...honest(['cpu/fp16w'], 2, 15), { cls: 'cpu/fp16w', hidden: other, peerId: 'tamper' }]
    expect(calibrate(samples, calRef, { hiddenSize: h }).rejected.map((r) => r.peerId)).toEqual(['tamper'])
  })
})

describe('calibrate input', () => {
  const x = new Gaussian(5).array(64)

  it('rejects samples that are malformed or too far from the reference, and says why', () => {
    const g = new Gaussian(6)
    const nan = Float32Array.from(x)
    nan[3] = Number.NaN
    const { table: t, rejected } = calibrate(
      [
        { cls: 'cpu/fp32', hidden: x },
        { cls: 'cpu/fp16w', hidden: g.array(64), peerId: 'liar' },
        { cls: 'cpu/fp16w', hidden: nan },
        { cls: 'cpu/fp16w', hidden: x.slice(1) },
        { cls: 'CPU fp32', hidden: x },
        null as unknown as { cls: string; hidden: Float32Array },
      ],
      x,
      { hiddenSize: 32 },
    )
    expect(rejected.map((r) => [r.index, r.reason.split(' ')[0]])).toEqual([
      [1, 'deviates'],
      [2, 'non-finite'],
      [3, 'wrong'],
      [4, 'not'],
      [5, 'not'],
    ])
    expect(rejected[0]?.peerId).toBe('liar')
    // Only the class with an accepted sample can be verified.
    expect(t.classes()).toEqual(['cpu/fp32'])
    expectVerifyError(() => t.get('cpu/fp16w', 'cpu/fp16w'), 'ERR_VERIFY_CLASS')
  })

  it('applies the safety factor and the floor', () => {
    const g = new Gaussian(7)
    // Under cpu/fp16w's cap of 1e-2 (calibration-bounds.ts): a lone sample is bounded by it.
    const a = noisy(g, x, 32, 0.005)
    const { table: t, observed } = calibrate([{ cls: 'cpu/fp16w', hidden: a }], x, { hiddenSize: 32 })
    const dev = observed[0]?.deviation as number
    expect(dev).toBeCloseTo(compareHidden(a, x, 32, { relative: 1, indexOverlap: 0 }).deviation, 12)
    expect(t.get('cpu/fp16w', 'cpu/fp16w').relative).toBeCloseTo(4 * dev, 12)
    const tight = calibrate([{ cls: 'cpu/fp16w', hidden: a }], x, {
      hiddenSize: 32,
      floor: 0.5,
      safetyFactor: 2,
    })
    expect(tight.table.get('cpu/fp16w', 'cpu/fp16w').relative).toBe(0.5)
  })

  it.each<[string, () => unknown]>([
    ['hiddenSize 0', () => calibrate([], x, { hiddenSize: 0 })],
    ['reference not whole rows', () => calibrate([], x, { hiddenSize: 60 })],
    ['reference empty', () => calibrate([], new Float32Array(0), { hiddenSize: 4 })],
    ['reference NaN', () => calibrate([], new Float32Array([Number.NaN, 1]), { hiddenSize: 2 })],
    ['safetyFactor below 1', () => calibrate([], x, { hiddenSize: 32, safetyFactor: 0.5 })],
    ['floor 0', () => calibrate([], x, { hiddenSize: 32, floor: 0 })],
    ['maxDeviation NaN', () => calibrate([], x, { hiddenSize: 32, maxDeviation: Number.NaN })],
    ['outlierFactor below 1', () => calibrate([], x, { hiddenSize: 32, outlierFactor: 0.5 })],
    ['a class cap of 0', () => calibrate([], x, { hiddenSize: 32, classCaps: { fp32: 0 } })],
    [
      'homogeneityRatio 0.5',
      () => calibrate([{ cls: 'a/b', hidden: x }], x, { hiddenSize: 32, homogeneityRatio: 0.5 }),
    ],
    ['samples not an array', () => calibrate({} as never, x, { hiddenSize: 32 })],
  ])('rejects bad arguments: %s', (_name, fn) => {
    expectVerifyError(fn, 'ERR_VERIFY_INPUT')
  })
})

describe('ToleranceTable', () => {
  const tol: Tolerance = { relative: 1e-3, indexOverlap: 0.75 }

  it.each<[string, () => unknown]>([
    ['bad class name', () => new ToleranceTable([{ a: 'fp32', b: 'fp32', tolerance: tol }])],
    [
      'negative tolerance',
      () => new ToleranceTable([{ a: 'a/b', b: 'a/b', tolerance: { ...tol, relative: -1 } }]),
    ],
    [
      'cross pair without within-class entries',
      () => new ToleranceTable([{ a: 'a/b', b: 'c/d', tolerance: tol }]),
    ],
  ])('rejects %s', (_name, fn) => {
    expectVerifyError(fn, 'ERR_VERIFY_INPUT')
  })

  it('judges homogeneity by the ratio of cross to within tolerance', () => {
    const t = new ToleranceTable([
      { a: 'x/1', b: 'x/1', tolerance: tol },
      { a: 'y/1', b: 'y/1', tolerance: { ...tol, relative: 2e-3 } },
      { a: 'z/1', b: 'z/1', tolerance: tol },
      { a: 'x/1', b: 'y/1', tolerance: { ...tol, relative: 2e-3 } },
      { a: 'x/1', b: 'z/1', tolerance: { ...tol, relative: 2.01e-3 } },
    ])
    expect(t.homogeneous('x/1', 'y/1')).toBe(true)
    expect(t.homogeneous('y/1', 'x/1')).toBe(true)
    expect(t.homogeneous('x/1', 'z/1')).toBe(false)
    expect(t.homogeneous('y/1', 'z/1')).toBe(false) // never calibrated together
    expect(t.homogeneousGroups(['x/1', 'y/1', 'z/1', 'w/1'])).toEqual([['x/1', 'y/1'], ['z/1']])
  })
})
