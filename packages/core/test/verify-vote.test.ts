import { describe, expect, it } from 'vitest'
import { calibrate } from '../src/verify/calibration.js'
import { fingerprintHidden } from '../src/verify/fingerprint.js'
import { ToleranceTable } from '../src/verify/tolerance.js'
import {
  type HiddenReply,
  type HiddenVote,
  requireQuorum,
  voteHidden,
  voteToken,
} from '../src/verify/vote.js'
import { expectVerifyError, Gaussian, noisy } from './verify-helpers.js'

const H = 128
const SEQ = 3
const SHAPE = { seqLen: SEQ, hiddenSize: H }
const CLS = 'cpu/fp16w'
// Honest replicas of the class deviate ~1e-3 from the exact output (independently, which is
// pessimistic: real replicas of one class deviate together).
const NOISE = 1e-3

function world(seed: number) {
  const g = new Gaussian(seed)
  const exact = g.array(SEQ * H)
  const cal = g.array(SEQ * H)
  const samples = [0, 1, 2].map(() => ({ cls: CLS, hidden: noisy(g, cal, H, NOISE) }))
  const { table } = calibrate(samples, cal, { hiddenSize: H })
  return { g, exact, table }
}

function combinations(n: number, k: number): number[][] {
  if (k === 0) return [[]]
  const out: number[][] = []
  for (let first = 0; first <= n - k; first++) {
    for (const rest of combinations(n - first - 1, k - 1))
      out.push([first, ...rest.map((r) => r + first + 1)])
  }
  return out
}

type LieStyle = 'colluding' | 'independent'

/**
 * The coordinator's loop: the primary (replica `primary`) ships its full state, the others a
 * fingerprint under their own challenge; without quorum it asks the next suggested peer for its
 * full state and votes again. Returns the final vote and the number of rounds.
 */
function runProtocol(
  outputs: Float32Array[],
  primary: number,
  f: number,
  table: ToleranceTable,
  g: Gaussian,
): { vote: HiddenVote; rounds: number } {
  const replies: HiddenReply[] = outputs.map((x, i) => ({
    peerId: `p${i}`,
    cls: CLS,
    ...(i === primary
      ? { full: x }
      : { fingerprint: fingerprintHidden(x, SEQ, H, 16, { challenge: g.u32() }) }),
  }))
  for (let round = 1; ; round++) {
    const vote = voteHidden(replies, f, table, SHAPE)
    const next = vote.ok ? undefined : vote.askFullFrom[0]
    if (next === undefined) return { vote, rounds: round }
    const i = Number(next.slice(1))
    replies[i] = { ...(replies[i] as HiddenReply), full: outputs[i] as Float32Array }
  }
}

function lieOutputs(
  g: Gaussian,
  exact: Float32Array,
  r: number,
  liars: number[],
  style: LieStyle,
): Float32Array[] {
  const shared = noisy(g, exact, H, 0.3)
  const kinds = [
    () => noisy(g, exact, H, 0.3),
    () => new Float32Array(exact.length),
    () => g.array(exact.length),
    () => exact.map((v) => -v),
    () => noisy(g, exact, H, 0.05),
  ]
  return Array.from({ length: r }, (_, i) => {
    if (!liars.includes(i)) return noisy(g, exact, H, NOISE * (0.75 + 0.5 * g.uniform()))
    return style === 'colluding' ? shared : (kinds[liars.indexOf(i) % kinds.length] as () => Float32Array)()
  })
}

describe('voteHidden', () => {
  for (const f of [1, 2]) {
    const r = 2 * f + 1
    it(`f=${f} (r=${r}): accepts the honest output with up to f liars anywhere, the primary included`, () => {
      const { g, exact, table } = world(f)
      let cases = 0
      for (let liarCount = 0; liarCount <= f; liarCount++) {
        for (const liars of combinations(r, liarCount)) {
          for (const style of ['colluding', 'independent'] as const) {
            for (let primary = 0; primary < r; primary++) {
              const outputs = lieOutputs(g, exact, r, liars, style)
              const { vote, rounds } = runProtocol(outputs, primary, f, table, g)
              const honest = [...Array(r).keys()].filter((i) => !liars.includes(i)).map((i) => `p${i}`)
              expect(vote.ok).toBe(true)
              if (!vote.ok) continue
              expect(honest).toContain(vote.accepted.peerId)
              expect(vote.accepted.hidden).toBe(outputs[Number(vote.accepted.peerId.slice(1))])
              expect([...vote.agreeing].sort()).toEqual(honest)
              expect([...vote.disagreeing].sort()).toEqual(liars.map((i) => `p${i}`))
              // A lying primary costs exactly one more round: the next full state is honest.
              expect(rounds).toBe(liars.includes(primary) ? 2 : 1)
              cases++
            }
          }
        }
      }
      expect(cases).toBe(f === 1 ? 2 * 3 * (1 + 3) : 2 * 5 * (1 + 5 + 10))
    })

    it(`f=${f} (r=${r}): f+1 independent liars leave no quorum, and requireQuorum says so`, () => {
      const { g, exact, table } = world(10 + f)
      for (const liars of combinations(r, f + 1)) {
        for (let primary = 0; primary < r; primary++) {
          const outputs = lieOutputs(g, exact, r, liars, 'independent')
          const { vote } = runProtocol(outputs, primary, f, table, g)
          expect(vote.ok).toBe(false)
          if (vote.ok) continue
          expect(vote.askFullFrom).toEqual([])
          expect(vote.agreeing.length).toBeLessThanOrEqual(f)
          const err = expectVerifyError(() => requireQuorum(vote, 3), 'ERR_NO_QUORUM')
          expect(err.stage).toBe(3)
          expect(err.peers).toEqual(vote.disagreeing)
          expect(err.peers.length).toBeGreaterThan(0)
        }
      }
    })
  }

  it('the bound is tight: f+1 colluding liars win (why r = 2f+1 and flagging matter)', () => {
    const { g, exact, table } = world(20)
    const outputs = lieOutputs(g, exact, 3, [0, 1], 'colluding')
    const { vote } = runProtocol(outputs, 0, 1, table, g)
    expect(vote.ok && vote.accepted.peerId).toBe('p0')
  })

  it('counts invalid replies as disagreeing and never throws on peer data', () => {
    const { g, exact, table } = world(30)
    const honest = () => noisy(g, exact, H, NOISE)
    const a = honest()
    const nan = honest()
    nan[5] = Number.NaN
    const wrongShapeFp = fingerprintHidden(honest().slice(0, 2 * H), 2, H)
    const inconsistent = honest()
    const replies: HiddenReply[] = [
      { peerId: 'a', cls: CLS, full: a },
      { peerId: 'b', cls: CLS, fingerprint: fingerprintHidden(honest(), SEQ, H, 16, { challenge: 1 }) },
      { peerId: 'nan', cls: CLS, full: nan },
      { peerId: 'short', cls: CLS, full: a.slice(1) },
      { peerId: 'wrong-shape', cls: CLS, fingerprint: wrongShapeFp },
      { peerId: 'nothing', cls: CLS },
      { peerId: 'array', cls: CLS, full: [...a] as unknown as Float32Array },
      { peerId: 'bad-fp', cls: CLS, fingerprint: { seqLen: 3 } as never },
      {
        peerId: 'two-faced',
        cls: CLS,
        full: inconsistent.map((v) => v * 2),
        fingerprint: fingerprintHidden(inconsistent, SEQ, H),
      },
      { peerId: 'unknown-class', cls: 'tpu/bf16', full: a },
      { peerId: 'bad-class', cls: 'not a class', full: a },
    ]
    const vote = voteHidden(replies, 1, table, SHAPE)
    expect(vote.ok).toBe(true)
    expect(vote.agreeing).toEqual(['a', 'b'])
    const invalid = ['nan', 'short', 'wrong-shape', 'nothing', 'array', 'bad-fp', 'two-faced']
    expect(vote.invalid).toEqual(invalid)
    expect(vote.disagreeing).toEqual(invalid)
    expect(vote.incomparable).toEqual(['unknown-class', 'bad-class'])
  })

  it('does not count replicas of a class that is not homogeneous with the candidate', () => {
    const g = new Gaussian(40)
    const exact = g.array(SEQ * H)
    const table = new ToleranceTable([
      { a: 'cpu/fp32', b: 'cpu/fp32', tolerance: { relative: 1e-4, indexOverlap: 0.75 } },
      { a: CLS, b: CLS, tolerance: { relative: 5e-3, indexOverlap: 0.75 } },
      { a: 'cpu/fp32', b: CLS, tolerance: { relative: 5e-3, indexOverlap: 0.75 } },
    ])
    const replies: HiddenReply[] = [
      { peerId: 'w1', cls: CLS, full: noisy(g, exact, H, NOISE) },
      { peerId: 'f1', cls: 'cpu/fp32', fingerprint: fingerprintHidden(exact, SEQ, H) },
      { peerId: 'f2', cls: 'cpu/fp32', fingerprint: fingerprintHidden(exact, SEQ, H, 16, { challenge: 4 }) },
    ]
    const vote = voteHidden(replies, 1, table, SHAPE)
    expect(vote.ok).toBe(false)
    expect(vote.agreeing).toEqual(['w1'])
    expect(vote.incomparable).toEqual(['f1', 'f2'])
    expect(!vote.ok && vote.askFullFrom).toEqual(['f1', 'f2'])
    const again = voteHidden(
      [...replies.slice(0, 2), { ...(replies[2] as HiddenReply), full: exact }],
      1,
      table,
      SHAPE,
    )
    expect(again.ok && again.accepted.peerId).toBe('f2')
    expect(again.agreeing).toEqual(['f2', 'f1'])
    expect(again.incomparable).toEqual(['w1'])
  })

  it('with several full states picks the best supported and f = 0 accepts any valid one', () => {
    const { g, exact, table } = world(50)
    const lie = noisy(g, exact, H, 0.5)
    const honest = [0, 1, 2].map(() => noisy(g, exact, H, NOISE))
    const replies: HiddenReply[] = [
      { peerId: 'liar', cls: CLS, full: lie },
      ...honest.map((full, i) => ({ peerId: `h${i}`, cls: CLS, full })),
    ]
    const vote = voteHidden(replies, 1, table, SHAPE)
    expect(vote.ok && vote.accepted.peerId).toBe('h0')
    expect(vote.disagreeing).toEqual(['liar'])
    expect(voteHidden(replies.slice(0, 1), 0, table, SHAPE).ok).toBe(true)
    const none = voteHidden([], 1, table, SHAPE)
    expect(none).toMatchObject({ ok: false, agreeing: [], disagreeing: [], askFullFrom: [] })
  })

  it.each<[string, () => unknown]>([
    [
      'f negative',
      () => voteHidden([], -1, ToleranceTable.uniform([CLS], { relative: 1, indexOverlap: 0 }), SHAPE),
    ],
    ['f fractional', () => voteToken([], 0.5)],
    [
      'duplicate peer',
      () =>
        voteToken(
          [
            { peerId: 'a', token: 1 },
            { peerId: 'a', token: 1 },
          ],
          1,
        ),
    ],
    ['empty peer id', () => voteToken([{ peerId: '', token: 1 }], 1)],
    ['null reply', () => voteToken([null as never], 1)],
    ['not a table', () => voteHidden([], 1, {} as never, SHAPE)],
    [
      'bad shape',
      () =>
        voteHidden([], 1, ToleranceTable.uniform([CLS], { relative: 1, indexOverlap: 0 }), {
          seqLen: 0,
          hiddenSize: H,
        }),
    ],
  ])('rejects caller errors: %s', (_name, fn) => {
    expectVerifyError(fn, 'ERR_VERIFY_INPUT')
  })
})

describe('voteToken', () => {
  for (const f of [1, 2]) {
    const r = 2 * f + 1
    it(`f=${f}: exact agreement of f+1 wins with up to f liars anywhere; f+1 split liars leave no quorum`, () => {
      for (let liarCount = 0; liarCount <= f + 1; liarCount++) {
        for (const liars of combinations(r, liarCount)) {
          const replies = Array.from({ length: r }, (_, i) => ({
            peerId: `p${i}`,
            token: liars.includes(i) ? 1000 + liars.indexOf(i) : 42,
          }))
          const vote = voteToken(replies, f)
          const liarIds = liars.map((i) => `p${i}`)
          if (liarCount <= f) {
            expect(vote).toEqual({
              ok: true,
              token: 42,
              agreeing: replies.filter((_, i) => !liars.includes(i)).map((x) => x.peerId),
              disagreeing: liarIds,
            })
            expect(requireQuorum(vote, 0).token).toBe(42)
          } else {
            expect(vote.ok).toBe(false)
            expect(vote.token).toBeUndefined()
            expectVerifyError(() => requireQuorum(vote, 7), 'ERR_NO_QUORUM')
          }
        }
      }
    })
  }

  it('treats invalid tokens as disagreement and two quorums as none', () => {
    const vote = voteToken(
      [
        { peerId: 'a', token: 5 },
        { peerId: 'b', token: -1 },
        { peerId: 'c', token: 5 },
        { peerId: 'd', token: 1.5 },
        { peerId: 'e', token: Number.NaN },
      ],
      1,
    )
    expect(vote).toEqual({ ok: true, token: 5, agreeing: ['a', 'c'], disagreeing: ['b', 'd', 'e'] })
    const split = voteToken(
      [
        { peerId: 'a', token: 5 },
        { peerId: 'b', token: 6 },
        { peerId: 'c', token: 5 },
        { peerId: 'd', token: 6 },
      ],
      1,
    )
    expect(split.ok).toBe(false)
    expect(!split.ok && split.groups).toEqual([
      { token: 5, peers: ['a', 'c'] },
      { token: 6, peers: ['b', 'd'] },
    ])
  })
})
