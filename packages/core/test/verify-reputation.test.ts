import { describe, expect, it } from 'vitest'
import { calibrate } from '../src/verify/calibration.js'
import { compareToFingerprint } from '../src/verify/compare-hidden.js'
import { fingerprintHidden } from '../src/verify/fingerprint.js'
import { ReputationBook, type ReputationOptions } from '../src/verify/reputation.js'
import { voteToken } from '../src/verify/vote.js'
import { expectVerifyError, Gaussian, noisy } from './verify-helpers.js'

describe('ReputationBook flagging', () => {
  it('flags a persistent liar on its third disagreement', () => {
    const book = new ReputationBook()
    book.record('liar', 'disagree')
    book.record('liar', 'agree')
    book.record('liar', 'disagree')
    expect(book.isFlagged('liar')).toBe(false)
    book.record('liar', 'disagree')
    expect(book.isFlagged('liar')).toBe(true)
    expect(book.get('liar')).toMatchObject({
      agreements: 1,
      disagreements: 3,
      flagged: true,
      flagReason: 'burst',
    })
    // Sticky: agreeing afterwards does not clear it.
    for (let i = 0; i < 500; i++) book.record('liar', 'agree')
    expect(book.isFlagged('liar')).toBe(true)
    book.unflag('liar')
    expect(book.get('liar')).toMatchObject({ agreements: 0, disagreements: 0, flagged: false })
  })

  it('forgets disagreements that leave the window', () => {
    const book = new ReputationBook({
      window: 10,
      rateWindow: 10,
      minRateSamples: 10,
      maxDisagreementRate: 0.5,
    })
    // Two disagreements per 10 outcomes, forever: never three in one window of 10.
    for (let i = 0; i < 1000; i++) book.record('p', i % 5 === 0 ? 'disagree' : 'agree')
    expect(book.isFlagged('p')).toBe(false)
    expect(book.get('p')?.recentDisagreements).toBe(2)
    book.record('p', 'disagree')
    book.record('p', 'disagree')
    expect(book.isFlagged('p')).toBe(true)
  })

  it('flags a rare liar by its disagreement rate', () => {
    const options: ReputationOptions = { flagAfter: 10, window: 100, rateWindow: 1000, minRateSamples: 200 }
    const book = new ReputationBook(options)
    let flaggedAt = -1
    for (let i = 1; i <= 1000 && flaggedAt < 0; i++) {
      book.record('sly', i % 30 === 0 ? 'disagree' : 'agree') // 3.3% > 2%
      if (book.isFlagged('sly')) flaggedAt = i
    }
    expect(flaggedAt).toBe(200)
    expect(book.get('sly')?.flagReason).toBe('rate')
    // 1% stays below the 2% threshold.
    const honestish = new ReputationBook(options)
    for (let i = 1; i <= 5000; i++) honestish.record('p', i % 100 === 0 ? 'disagree' : 'agree')
    expect(honestish.isFlagged('p')).toBe(false)
  })

  it('never flags an honest peer over 10k noisy honest comparisons', () => {
    const g = new Gaussian(1)
    const h = 256
    const seqLen = 1
    const cal = g.array(h)
    const { table } = calibrate(
      [0, 1, 2].map(() => ({ cls: 'webgpu/fp16', hidden: noisy(g, cal, h, 5e-3) })),
      cal,
      { hiddenSize: h },
    )
    const tol = table.get('webgpu/fp16', 'webgpu/fp16')
    const book = new ReputationBook()
    let disagreements = 0
    for (let step = 0; step < 10_000; step++) {
      const exact = g.array(h)
      // The primary is honest; the checked peer's own honest noise varies by +-50% per input.
      const primary = noisy(g, exact, h, 5e-3 * (0.5 + g.uniform()))
      const mine = noisy(g, exact, h, 5e-3 * (0.5 + g.uniform()))
      const fp = fingerprintHidden(mine, seqLen, h, 16, { challenge: g.u32() })
      const agree = compareToFingerprint(primary, fp, tol).agree
      if (!agree) disagreements++
      book.record('honest', agree ? 'agree' : 'disagree')
    }
    expect(disagreements).toBe(0)
    expect(book.isFlagged('honest')).toBe(false)
    expect(book.get('honest')?.agreements).toBe(10_000)
  })

  it('errors are counted but neither flag nor reset the streak', () => {
    const book = new ReputationBook({ trustAfter: 3 })
    for (let i = 0; i < 3; i++) book.record('p', 'agree')
    for (let i = 0; i < 50; i++) book.record('p', 'error')
    expect(book.get('p')).toMatchObject({ errors: 50, timeouts: 0, streak: 3, flagged: false, trusted: true })
    expect(book.snapshot()).toMatchObject({ errors: 50, flagged: 0 })
  })

  it('missed deadlines flag a peer as unresponsive after flagAfterTimeouts', () => {
    const strict = new ReputationBook({ trustAfter: 3 })
    for (let i = 0; i < 3; i++) strict.record('p', 'agree')
    strict.record('p', 'timeout')
    expect(strict.get('p')).toMatchObject({
      timeouts: 1,
      streak: 3,
      flagged: true,
      flagReason: 'unresponsive',
    })
    const lenient = new ReputationBook({ flagAfterTimeouts: 3 })
    lenient.record('q', 'timeout')
    lenient.record('q', 'timeout')
    expect(lenient.isFlagged('q')).toBe(false)
    lenient.record('q', 'timeout')
    expect(lenient.get('q')?.flagReason).toBe('unresponsive')
    expect(() => new ReputationBook({ flagAfterTimeouts: 0 })).toThrow(/flagAfterTimeouts/)
    expect(() => strict.record('p', 'late' as 'timeout')).toThrow(/outcome/)
  })

  it('records a vote that reached quorum, and nothing from one that did not', () => {
    const book = new ReputationBook()
    book.recordVote(
      voteToken(
        [
          { peerId: 'a', token: 1 },
          { peerId: 'b', token: 1 },
          { peerId: 'c', token: 2 },
        ],
        1,
      ),
    )
    book.recordVote(
      voteToken(
        [
          { peerId: 'a', token: 1 },
          { peerId: 'b', token: 2 },
          { peerId: 'c', token: 3 },
        ],
        1,
      ),
    )
    expect(book.snapshot()).toEqual({
      peers: [
        {
          peerId: 'a',
          agreements: 1,
          disagreements: 0,
          timeouts: 0,
          errors: 0,
          flagged: false,
          streak: 1,
          recentDisagreements: 0,
          trusted: false,
        },
        {
          peerId: 'b',
          agreements: 1,
          disagreements: 0,
          timeouts: 0,
          errors: 0,
          flagged: false,
          streak: 1,
          recentDisagreements: 0,
          trusted: false,
        },
        {
          peerId: 'c',
          agreements: 0,
          disagreements: 1,
          timeouts: 0,
          errors: 0,
          flagged: false,
          streak: 0,
          recentDisagreements: 1,
          trusted: false,
        },
      ],
      flagged: 0,
      trusted: 0,
      agreements: 2,
      disagreements: 1,
      timeouts: 0,
      errors: 0,
    })
    expect(JSON.parse(JSON.stringify(book.snapshot()))).toEqual(book.snapshot())
    book.forget('c')
    expect(book.get('c')).toBeUndefined()
  })
})

describe('trust, probation and proven lies', () => {
  it('trusts after trustAfter agreements in a row; one disagreement resets the streak', () => {
    const book = new ReputationBook({ trustAfter: 5 })
    for (let i = 0; i < 4; i++) book.record('p', 'agree')
    expect(book.get('p')?.trusted).toBe(false)
    book.record('p', 'agree')
    expect(book.get('p')?.trusted).toBe(true)
    book.record('p', 'disagree')
    expect(book.get('p')).toMatchObject({ streak: 0, trusted: false, flagged: false })
  })

  it('a peer that disagreed is a suspect until its record is clean for trustAfter steps', () => {
    const book = new ReputationBook({ trustAfter: 3 })
    expect(book.isSuspect('new')).toBe(false)
    book.record('p', 'agree')
    book.record('p', 'disagree')
    expect(book.isSuspect('p')).toBe(true)
    book.record('p', 'agree')
    book.record('p', 'agree')
    expect(book.isSuspect('p')).toBe(true)
    book.record('p', 'agree')
    expect(book.isSuspect('p')).toBe(false)
  })

  it('a proven lie flags at once, whatever the record before it', () => {
    const book = new ReputationBook({ trustAfter: 2 })
    for (let i = 0; i < 50; i++) book.record('p', 'agree')
    book.recordProven('p')
    expect(book.get('p')).toMatchObject({ flagged: true, flagReason: 'proven', disagreements: 1 })
    expect(book.isSuspect('p')).toBe(false)
  })
})

describe('ReputationBook input', () => {
  it.each<[string, () => unknown]>([
    ['flagAfter 0', () => new ReputationBook({ flagAfter: 0 })],
    ['window 1.5', () => new ReputationBook({ window: 1.5 })],
    ['rateWindow below window', () => new ReputationBook({ window: 100, rateWindow: 50 })],
    ['minRateSamples above rateWindow', () => new ReputationBook({ minRateSamples: 2000 })],
    ['rate 2', () => new ReputationBook({ maxDisagreementRate: 2 })],
    ['trustAfter 0', () => new ReputationBook({ trustAfter: 0 })],
    ['empty peer id', () => new ReputationBook().record('', 'agree')],
    ['bad outcome', () => new ReputationBook().record('p', 'lied' as never)],
  ])('rejects %s', (_name, fn) => {
    expectVerifyError(fn, 'ERR_VERIFY_INPUT')
  })

  it('a bad outcome does not create a peer', () => {
    const book = new ReputationBook()
    expectVerifyError(() => book.record('ghost', 'maybe' as never), 'ERR_VERIFY_INPUT')
    expect(book.get('ghost')).toBeUndefined()
  })
})
