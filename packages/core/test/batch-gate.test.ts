import { describe, expect, it } from 'vitest'
import { afterMicrotasks, BatchGate } from '../src/engine/batch-gate.js'

const ids = (n: number, prefix = 'g') => Array.from({ length: n }, (_, i) => `${prefix}${i}`)

describe('BatchGate', () => {
  it('lets a straggler wait for the batch that is away, up to 1.5 times the usual time away', () => {
    let now = 0
    const gate = new BatchGate(() => now, 50)
    const wake = () => undefined
    // A lone generation never waits; its first return also measures the time away (10 ms).
    expect(gate.shouldRun(new Set(['a']), wake)).toBe(true)
    gate.ran(['a'])
    now = 10
    expect(gate.shouldRun(new Set(['a']), wake)).toBe(true)
    gate.ran(['a', ...ids(8)])
    // 'a' is back first; eight are still away: it waits...
    now = 12
    expect(gate.shouldRun(new Set(['a']), wake)).toBe(false)
    // ...until more are back than away,
    now = 14
    expect(gate.shouldRun(new Set(['a', ...ids(3)]), wake)).toBe(false)
    expect(gate.shouldRun(new Set(['a', ...ids(5)]), wake)).toBe(true)
    // or the wait is over: 1.5 x the usual 10 ms.
    gate.ran(['a', ...ids(8)])
    now = 30
    expect(gate.shouldRun(new Set(['a']), wake)).toBe(false)
    now = 45.5
    expect(gate.shouldRun(new Set(['a']), wake)).toBe(true)
    gate.release()
  })

  it('never holds back one half of the generations for the other half', () => {
    let now = 0
    const gate = new BatchGate(() => now)
    const wake = () => undefined
    gate.ran(ids(4, 'a'))
    now = 5
    expect(gate.shouldRun(new Set(ids(4, 'a')), wake)).toBe(true)
    gate.ran(ids(4, 'a'))
    gate.ran(ids(4, 'b'))
    now = 8
    expect(gate.shouldRun(new Set(ids(4, 'b')), wake)).toBe(true)
  })

  it('forgets generations that ended, and those away far longer than usual', () => {
    let now = 0
    const gate = new BatchGate(() => now)
    const wake = () => undefined
    gate.ran(['a', 'b', 'c'])
    now = 2
    expect(gate.shouldRun(new Set(['a']), wake)).toBe(false)
    gate.forget('b')
    gate.forget('c')
    expect(gate.shouldRun(new Set(['a']), wake)).toBe(true)
    gate.ran(['a', 'd', 'e'])
    now = 1000
    expect(gate.shouldRun(new Set(['a']), wake)).toBe(true)
  })

  it('wakes the stage when the wait is over', async () => {
    const gate = new BatchGate(() => performance.now(), 5)
    gate.ran(['a'])
    expect(gate.shouldRun(new Set(['a']), () => undefined)).toBe(true)
    gate.ran(['a', 'b', 'c'])
    const woke = new Promise<boolean>((resolve) => {
      expect(gate.shouldRun(new Set(['a']), () => resolve(true))).toBe(false)
    })
    expect(await woke).toBe(true)
  })

  it('afterMicrotasks runs after every microtask queued before it', async () => {
    const order: string[] = []
    const done = new Promise<void>((resolve) =>
      afterMicrotasks(() => {
        order.push('macrotask')
        resolve()
      }),
    )
    let p = Promise.resolve()
    for (let i = 0; i < 20; i++) p = p.then(() => undefined)
    void p.then(() => order.push('microtasks'))
    await done
    expect(order).toEqual(['microtasks', 'macrotask'])
  })
})
