import type { Message, MessageConnection, ReceivedMessage } from '@butterfly/core'
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest'
import { LinkProber } from '../src/gateway/link-prober.js'

/** Plays the worker's side: records pings, and the test decides when (and whether) to pong. */
class FakeConnection {
  readonly pings: Array<{ nonce: number }> = []
  private readonly handlers = new Set<(msg: ReceivedMessage) => void>()
  private readonly closeHandlers = new Set<() => void>()
  send(msg: Message): Promise<void> {
    if (msg.type === 'Ping') this.pings.push({ nonce: msg.nonce })
    return Promise.resolve()
  }
  onMessage(h: (msg: ReceivedMessage) => void) {
    this.handlers.add(h)
    return () => this.handlers.delete(h)
  }
  onClose(h: () => void) {
    this.closeHandlers.add(h)
    return () => this.closeHandlers.delete(h)
  }
  pong(nonce: number): void {
    for (const h of this.handlers) h({ type: 'Pong', nonce, sentAt: 0 } as ReceivedMessage)
  }
  close(): void {
    for (const h of this.closeHandlers) h()
  }
  get listeners(): number {
    return this.handlers.size + this.closeHandlers.size
  }
}

let clock = 0
let prober: LinkProber
beforeEach(() => {
  vi.useFakeTimers()
  clock = 0
  prober = new LinkProber({ intervalMs: 100, window: 3, now: () => clock })
})
afterEach(() => {
  prober.close()
  vi.useRealTimers()
})

const watch = (id: string) => {
  const conn = new FakeConnection()
  prober.watch(id, conn as unknown as MessageConnection)
  return conn
}

describe('LinkProber', () => {
  test('a pong with the ping nonce gives the round trip; the median covers the recent window', () => {
    const conn = watch('w1')
    expect(prober.snapshot()).toEqual([])
    const rtts = [4, 1, 9, 2]
    for (const rtt of rtts) {
      const ping = conn.pings.at(-1)
      clock += rtt
      conn.pong(ping?.nonce ?? -1)
      vi.advanceTimersByTime(100)
    }
    expect(conn.pings.length).toBe(rtts.length + 1)
    // Window 3 keeps [1, 9, 2].
    expect(prober.snapshot()).toEqual([{ peerId: 'w1', rttMs: 2, lastRttMs: 2, samples: 3 }])
  })

  test('a pong with another nonce is ignored, and one ping is in flight at a time', () => {
    const conn = watch('w1')
    clock += 5
    conn.pong((conn.pings[0]?.nonce ?? 0) + 1)
    vi.advanceTimersByTime(300)
    expect(prober.snapshot()).toEqual([])
    expect(conn.pings.length).toBe(1)
  })

  test('a lost pong is given up after ten intervals, so probing goes on', () => {
    const conn = watch('w1')
    clock = 1000
    vi.advanceTimersByTime(100)
    expect(conn.pings.length).toBe(2)
    const second = conn.pings[1]?.nonce ?? -1
    clock += 3
    conn.pong(second)
    expect(prober.snapshot()[0]?.rttMs).toBe(3)
  })

  test('closing or forgetting a link removes it and its listeners', () => {
    const a = watch('a')
    const b = watch('b')
    a.pong(a.pings[0]?.nonce ?? -1)
    b.pong(b.pings[0]?.nonce ?? -1)
    expect(prober.snapshot().map((l) => l.peerId)).toEqual(['a', 'b'])
    a.close()
    prober.forget('b')
    expect(prober.snapshot()).toEqual([])
    expect(a.listeners + b.listeners).toBe(0)
  })
})
