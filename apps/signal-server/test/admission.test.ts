import { GatewayError, Xoshiro128ss } from '@butterfly/core'
import { describe, expect, test } from 'vitest'
import { Admission, type AdmissionClock, type AdmissionInit } from '../src/gateway/admission.js'
import { retryAfterOf, ServiceEstimate } from '../src/gateway/service-estimate.js'

/** Time that moves only when the test says: timers fire inside advance(), in deadline order. */
class ManualClock implements AdmissionClock {
  private t = 0
  private timers: Array<{ at: number; fn: () => void; live: boolean }> = []
  now(): number {
    return this.t
  }
  later(ms: number, fn: () => void): () => void {
    const timer = { at: this.t + ms, fn, live: true }
    this.timers.push(timer)
    return () => {
      timer.live = false
    }
  }
  advance(ms: number): void {
    const until = this.t + ms
    for (;;) {
      const due = this.timers.filter((x) => x.live && x.at <= until).sort((a, b) => a.at - b.at)[0]
      if (due === undefined) break
      this.t = due.at
      due.live = false
      due.fn()
    }
    this.t = until
  }
}

type Outcome =
  | { state: 'pending' }
  | { state: 'admitted'; release: () => void }
  | { state: 'refused'; err: unknown }

/** Watches one acquire; its outcome changes once at most (checked: nothing settles twice). */
function watch(p: Promise<() => void>): { outcome: Outcome } {
  const w: { outcome: Outcome } = { outcome: { state: 'pending' } }
  p.then(
    (release) => {
      expect(w.outcome.state).toBe('pending')
      w.outcome = { state: 'admitted', release }
    },
    (err: unknown) => {
      expect(w.outcome.state).toBe('pending')
      w.outcome = { state: 'refused', err }
    },
  )
  return w
}

/** Lets settled promises run their callbacks. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve))

const LIMITS: AdmissionInit = {
  maxConcurrent: 1,
  maxQueued: 100,
  maxQueuedPerKey: 100,
  maxQueueWaitMs: 30_000,
}

function admission(over: Partial<AdmissionInit> = {}, clock = new ManualClock()) {
  return { admission: new Admission({ ...LIMITS, ...over }, { clock }), clock }
}

function refusal(w: { outcome: Outcome }): GatewayError {
  expect(w.outcome.state).toBe('refused')
  const err = (w.outcome as { err: unknown }).err
  expect(err).toBeInstanceOf(GatewayError)
  return err as GatewayError
}

describe('Admission: fairness across client keys', () => {
  // Arrivals while the only slot is held; each admitted generation ends at once.
  const patterns: Array<[string, string[], string[]]> = [
    ['one key is plain FIFO', ['A', 'A', 'A'], ['A1', 'A2', 'A3']],
    ['a flood does not starve a late key', ['A', 'A', 'A', 'A', 'B'], ['A1', 'B1', 'A2', 'A3', 'A4']],
    ['interleaved arrivals keep their turns', ['A', 'B', 'A', 'B'], ['A1', 'B1', 'A2', 'B2']],
    ['three keys, uneven backlogs', ['A', 'A', 'A', 'B', 'C', 'C'], ['A1', 'B1', 'C1', 'A2', 'C2', 'A3']],
    [
      'a key that arrives later joins the ring last',
      ['B', 'A', 'A', 'B', 'C'],
      ['B1', 'A1', 'C1', 'B2', 'A2'],
    ],
  ]
  test.each(patterns)('%s', async (_, arrivals, expected) => {
    const { admission: a } = admission()
    const hold = await a.acquire('holder')
    const order: string[] = []
    const seen = new Map<string, number>()
    const all = arrivals.map((key) => {
      const n = (seen.get(key) ?? 0) + 1
      seen.set(key, n)
      return a.acquire(key).then((release) => {
        order.push(`${key}${n}`)
        release()
      })
    })
    expect(a.queued).toBe(arrivals.length)
    hold()
    await Promise.all(all)
    expect(order).toEqual(expected)
    expect(a.active).toBe(0)
    expect(a.queued).toBe(0)
  })

  test('a released slot goes straight to a waiter: a newcomer queues behind, it never overtakes', async () => {
    const { admission: a } = admission()
    const hold = await a.acquire('A')
    const b = watch(a.acquire('B'))
    hold()
    await flush()
    expect(b.outcome.state).toBe('admitted')
    expect(a.active).toBe(1)
    const c = watch(a.acquire('C'))
    await flush()
    expect(c.outcome.state).toBe('pending')
    expect(a.queued).toBe(1)
  })

  test('releasing twice frees one slot only', async () => {
    const { admission: a } = admission({ maxConcurrent: 2 })
    const first = await a.acquire('A')
    await a.acquire('A')
    first()
    first()
    expect(a.active).toBe(1)
  })
})

describe('Admission: caps', () => {
  test('past the per-key cap only that key is refused, ERR_QUEUE_FULL; the global cap still holds', async () => {
    const { admission: a } = admission({ maxQueued: 3, maxQueuedPerKey: 2 })
    await a.acquire('holder')
    watch(a.acquire('A'))
    watch(a.acquire('A'))
    const third = watch(a.acquire('A'))
    await flush()
    const err = refusal(third)
    expect(err.code).toBe('ERR_QUEUE_FULL')
    expect(err.message).toMatch(/this client already has 2/)
    expect(Number.isInteger(err.retryAfterSeconds)).toBe(true)
    expect(err.retryAfterSeconds).toBeGreaterThanOrEqual(1)
    const b = watch(a.acquire('B'))
    const c = watch(a.acquire('C'))
    await flush()
    expect(b.outcome.state).toBe('pending')
    expect(refusal(c).code).toBe('ERR_QUEUE_FULL')
    expect(a.queuedFor('A')).toBe(2)
    expect(a.queued).toBe(3)
  })
})

describe('Admission: back-pressure', () => {
  test('a waiter past the bound is dropped with ERR_QUEUE_TIMEOUT and a Retry-After from the estimate', async () => {
    const { admission: a, clock } = admission({ maxQueueWaitMs: 5000 })
    // One generation held its slot 4 s: that is the measured service time.
    const first = await a.acquire('A')
    clock.advance(4000)
    first()
    const hold = await a.acquire('A')
    const w = watch(a.acquire('B'))
    clock.advance(4999)
    await flush()
    expect(w.outcome.state).toBe('pending')
    clock.advance(1)
    await flush()
    const err = refusal(w)
    expect(err.code).toBe('ERR_QUEUE_TIMEOUT')
    // First in line, so its wait had one service time (4 s) left by the estimate.
    expect(err.retryAfterSeconds).toBe(4)
    expect(a.queued).toBe(0)
    // The slot it never took is not lost: releasing frees it.
    hold()
    expect(a.active).toBe(0)
  })

  test('an estimated wait past the bound is refused at once, judged at the fair position', async () => {
    const { admission: a, clock } = admission({ maxQueueWaitMs: 30_000 })
    const first = await a.acquire('A')
    clock.advance(10_000)
    first()
    await a.acquire('A')
    // Estimated waits 10, 20, 30 s: all within the bound (30 s is not past it).
    const queued = [watch(a.acquire('A')), watch(a.acquire('A')), watch(a.acquire('A'))]
    const fourth = watch(a.acquire('A'))
    // B's first request goes after one of A's, whatever A's backlog: 20 s, admitted to the queue.
    const b = watch(a.acquire('B'))
    await flush()
    for (const q of queued) expect(q.outcome.state).toBe('pending')
    const err = refusal(fourth)
    expect(err.code).toBe('ERR_QUEUE_TIMEOUT')
    expect(err.message).toMatch(/estimated wait of 40\.0 s exceeds the bound of 30\.0 s/)
    // After 40 - 30 s the queue ahead has drained enough for the wait to fit the bound.
    expect(err.retryAfterSeconds).toBe(10)
    expect(b.outcome.state).toBe('pending')
  })

  test('nothing measured yet: no refusal on the estimate, the deadline alone applies', async () => {
    const { admission: a } = admission({ maxQueueWaitMs: 1 })
    await a.acquire('A')
    const w = watch(a.acquire('B'))
    await flush()
    expect(w.outcome.state).toBe('pending')
  })
})

describe('Admission: aborts', () => {
  test('an abort while queued frees the place and rejects with its reason', async () => {
    const { admission: a } = admission({ maxQueued: 1 })
    const hold = await a.acquire('holder')
    const abort = new AbortController()
    const w = watch(a.acquire('A', abort.signal))
    const full = watch(a.acquire('B'))
    await flush()
    expect(refusal(full).code).toBe('ERR_QUEUE_FULL')
    abort.abort(new Error('client went away'))
    await flush()
    expect(w.outcome.state).toBe('refused')
    expect((w.outcome as { err: Error }).err.message).toBe('client went away')
    expect(a.queued).toBe(0)
    const b = watch(a.acquire('B'))
    hold()
    await flush()
    expect(b.outcome.state).toBe('admitted')
  })

  test('an already aborted signal is refused without queuing', async () => {
    const { admission: a } = admission()
    await a.acquire('holder')
    const w = watch(a.acquire('A', AbortSignal.abort(new Error('gone'))))
    await flush()
    expect(w.outcome.state).toBe('refused')
    expect(a.queued).toBe(0)
  })

  test('nothing is lost: under random arrivals, aborts, timeouts and releases every acquire settles once', async () => {
    const rng = new Xoshiro128ss(12345)
    const rand = (n: number) => Math.floor(rng.nextFloat64() * n)
    const clock = new ManualClock()
    const a = new Admission(
      { maxConcurrent: 3, maxQueued: 12, maxQueuedPerKey: 5, maxQueueWaitMs: 1500 },
      { clock },
    )
    const watched: Array<{ outcome: Outcome }> = []
    const aborts: AbortController[] = []
    const released = new Set<{ outcome: Outcome }>()
    for (let step = 0; step < 2000; step++) {
      // Arrivals outnumber releases, so queues fill up as well as drain.
      const op = rand(8)
      if (op < 4) {
        const abort = new AbortController()
        aborts.push(abort)
        watched.push(watch(a.acquire(`k${rand(4)}`, abort.signal)))
      } else if (op === 4 && aborts.length > 0) {
        aborts[rand(aborts.length)]?.abort(new Error('abort'))
      } else if (op === 5) {
        clock.advance(rand(200))
      } else {
        const running = watched.filter((w) => w.outcome.state === 'admitted' && !released.has(w))
        const w = running[rand(running.length)]
        if (w !== undefined) {
          released.add(w)
          ;(w.outcome as { release: () => void }).release()
        }
      }
      await flush()
      expect(a.active).toBeLessThanOrEqual(3)
      expect(a.queued).toBeLessThanOrEqual(12)
    }
    // Drain: release everything admitted until nothing waits.
    for (;;) {
      const running = watched.filter((w) => w.outcome.state === 'admitted' && !released.has(w))
      if (running.length === 0) break
      for (const w of running) {
        released.add(w)
        ;(w.outcome as { release: () => void }).release()
      }
      await flush()
    }
    expect(watched.every((w) => w.outcome.state !== 'pending')).toBe(true)
    expect(watched.some((w) => w.outcome.state === 'admitted')).toBe(true)
    const codes = new Set(
      watched.flatMap((w) =>
        w.outcome.state === 'refused' ? [(w.outcome.err as { code?: string }).code ?? 'abort'] : [],
      ),
    )
    expect(codes).toEqual(new Set(['ERR_QUEUE_FULL', 'ERR_QUEUE_TIMEOUT', 'abort']))
    expect(a.active).toBe(0)
    expect(a.queued).toBe(0)
  })
})

describe('service estimate and Retry-After', () => {
  test('the estimate is an EWMA of slot times spread over the slots', () => {
    const e = new ServiceEstimate(4, 0.5)
    expect(e.waitMs(0)).toBeUndefined()
    e.observe(1000)
    e.observe(3000)
    expect(e.serviceMs).toBe(2000)
    expect(e.waitMs(0)).toBe(500)
    expect(e.waitMs(3)).toBe(2000)
  })

  test.each([
    [0, 1],
    [1, 1],
    [1000, 1],
    [1001, 2],
    [59_500, 60],
    [3_600_000, 60],
    [Number.POSITIVE_INFINITY, 60],
  ])('a wait of %d ms is Retry-After %d', (ms, seconds) => {
    expect(retryAfterOf(ms)).toBe(seconds)
  })
})
