import { describe, expect, it } from 'vitest'
import { WireProtocolError } from '../src/errors.js'
import {
  type BufferedChannel,
  defaultSleep,
  type Sleep,
  sendWithBackpressure,
} from '../src/wire/backpressure.js'

/**
 * A channel on a fake clock: it drains `rate` bytes per ms and never fires bufferedamountlow,
 * like @roamhq/wrtc. `sleep` advances the clock instantly, so no test waits for real time.
 */
class FakeChannel implements BufferedChannel {
  now = 0
  queued = 0
  lastDrain = 0
  sent: Uint8Array[] = []
  /** bufferedAmount seen just before each send. */
  before: number[] = []
  sleeps = 0

  constructor(private readonly rate: number) {}

  get bufferedAmount(): number {
    this.queued = Math.max(0, this.queued - (this.now - this.lastDrain) * this.rate)
    this.lastDrain = this.now
    return this.queued
  }

  send(data: Uint8Array): void {
    this.before.push(this.bufferedAmount)
    this.queued += data.length
    this.sent.push(data)
  }

  sleep: Sleep = async (ms) => {
    this.sleeps++
    this.now += ms
  }
}

function frames(n: number, size: number): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => new Uint8Array(size).fill(i))
}

describe('sendWithBackpressure', () => {
  it('waits by polling when the channel never fires bufferedamountlow', async () => {
    const ch = new FakeChannel(1000) // bytes per ms
    const list = frames(40, 64 * 1024)
    const listening: AbortSignal[] = []
    // The event never comes: the promise only settles (rejects) when we stop listening.
    const waitForLow = (signal: AbortSignal) => {
      listening.push(signal)
      return new Promise<void>((_, reject) =>
        signal.addEventListener('abort', () => reject(new Error('stop'))),
      )
    }
    await sendWithBackpressure(ch, list, {
      highWaterMark: 256 * 1024,
      pollMs: 5,
      sleep: ch.sleep,
      waitForLow,
    })
    expect(ch.sent).toHaveLength(list.length)
    for (const [i, f] of ch.sent.entries()) expect(f).toBe(list[i])
    for (const b of ch.before) expect(b).toBeLessThanOrEqual(256 * 1024)
    expect(Math.max(...ch.before)).toBeGreaterThan(200 * 1024)
    // 40 * 64 KiB with at most 256 KiB in flight: the clock must have run long enough to drain the rest.
    expect(ch.now).toBeGreaterThanOrEqual((40 * 64 * 1024 - 320 * 1024) / 1000)
    expect(ch.sleeps).toBeGreaterThan(0)
    expect(listening.length).toBe(ch.sleeps)
    for (const s of listening) expect(s.aborted).toBe(true)
  })

  it('wakes on bufferedamountlow without waiting for the poll', async () => {
    const ch = new FakeChannel(0)
    let polls = 0
    // A poll that never ends unless aborted: only the event can wake the sender.
    const sleep: Sleep = (_ms, signal) => {
      polls++
      return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
    }
    const waitForLow = async () => {
      ch.queued = 0
    }
    await sendWithBackpressure(ch, frames(10, 1000), { highWaterMark: 1500, sleep, waitForLow })
    expect(ch.sent).toHaveLength(10)
    expect(polls).toBe(4)
  })

  it('does not spin when the event fires but the queue has not drained', async () => {
    const ch = new FakeChannel(10)
    let polls = 0
    let events = 0
    // Time passes only when a poll runs to completion, a few microtasks after the event would win.
    const sleep: Sleep = async (ms, signal) => {
      for (let i = 0; i < 20; i++) await Promise.resolve()
      if (signal.aborted) return
      polls++
      ch.now += ms
    }
    const waitForLow = async () => {
      // Without the poll-only fallback this would loop in microtasks forever; fail instead of hanging.
      if (++events > 1000) throw new Error('spinning on bufferedamountlow')
    }
    await sendWithBackpressure(ch, frames(5, 1000), { highWaterMark: 500, pollMs: 10, sleep, waitForLow })
    expect(ch.sent).toHaveLength(5)
    for (const b of ch.before) expect(b).toBeLessThanOrEqual(500)
    // Frame 2 waits for 500 bytes to drain, frames 3..5 for 1000 each: 35 polls of 100 bytes,
    // each one right after a spurious event.
    expect(polls).toBe(35)
    expect(events).toBe(35)
  })

  it('rejects with the signal reason when aborted while waiting', async () => {
    const ch = new FakeChannel(0) // never drains
    const controller = new AbortController()
    const reason = new Error('peer left')
    const sleep: Sleep = async (ms) => {
      ch.now += ms
      if (ch.now >= 50) controller.abort(reason)
    }
    const p = sendWithBackpressure(ch, frames(3, 1000), {
      highWaterMark: 10,
      pollMs: 10,
      sleep,
      signal: controller.signal,
    })
    await expect(p).rejects.toBe(reason)
    expect(ch.sent).toHaveLength(1)
    expect(ch.now).toBe(50)
  })

  it('an abort interrupts a wait that would never end on its own', async () => {
    const ch = new FakeChannel(0)
    const controller = new AbortController()
    let waiting!: () => void
    const started = new Promise<void>((resolve) => {
      waiting = resolve
    })
    const sleep: Sleep = (_ms, signal) => {
      waiting()
      return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
    }
    const p = sendWithBackpressure(ch, frames(2, 100), {
      highWaterMark: 10,
      sleep,
      signal: controller.signal,
    })
    await started
    controller.abort('stop')
    await expect(p).rejects.toBe('stop')
    expect(ch.sent).toHaveLength(1)
  })

  it('sends nothing when the signal is already aborted', async () => {
    const ch = new FakeChannel(0)
    const controller = new AbortController()
    controller.abort(new Error('early'))
    await expect(sendWithBackpressure(ch, frames(2, 10), { signal: controller.signal })).rejects.toThrow(
      'early',
    )
    expect(ch.sent).toHaveLength(0)
  })

  it('propagates errors from send and from waitForLow', async () => {
    const closed: BufferedChannel = {
      bufferedAmount: 0,
      send() {
        throw new Error('channel closed')
      },
    }
    await expect(sendWithBackpressure(closed, frames(1, 1))).rejects.toThrow('channel closed')
    const full = new FakeChannel(0)
    full.queued = 10
    const never: Sleep = (_ms, signal) =>
      new Promise((resolve) => signal.addEventListener('abort', () => resolve()))
    const waitForLow = async () => {
      throw new Error('listener failed')
    }
    await expect(
      sendWithBackpressure(full, frames(1, 1), { highWaterMark: 5, sleep: never, waitForLow }),
    ).rejects.toThrow('listener failed')
  })

  it('polls with real timers by default', async () => {
    let reads = 0
    const sent: number[] = []
    const ch: BufferedChannel = {
      get bufferedAmount() {
        reads++
        return reads % 3 === 0 ? 0 : 1e9
      },
      send(data) {
        sent.push(data.length)
      },
    }
    await sendWithBackpressure(ch, frames(3, 7), { pollMs: 1 })
    expect(sent).toEqual([7, 7, 7])
    expect(reads).toBe(9)
  })

  it('defaultSleep resolves early on abort', async () => {
    const controller = new AbortController()
    const p = defaultSleep(60_000, controller.signal)
    controller.abort()
    await expect(p).resolves.toBeUndefined()
  })

  it('validates its options', async () => {
    const ch = new FakeChannel(0)
    for (const opts of [{ highWaterMark: -1 }, { highWaterMark: Number.NaN }, { pollMs: 0 }]) {
      const err = await sendWithBackpressure(ch, [], opts).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(WireProtocolError)
      expect((err as WireProtocolError).code).toBe('ERR_WIRE_OPTIONS')
    }
  })
})
