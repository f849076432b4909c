import { describe, expect, it } from 'vitest'
import { afterMicrotasks, BatchGate } from '../src/engine/batch-gate.js'

describe('BatchGate', () => {
  it('waits for the rest of the last batch once one of it is back, at most one run long', () => {
    let now = 0
    const gate = new BatchGate(() => now, 4)
    const woken: number[] = []
    gate.ran(['a', 'b', 'c'], 3)
    // Nobody from the last batch is back: whatever is ready runs (another phase, a newcomer).
    expect(gate.shouldRun(new Set(['x']), () => woken.push(now))).toBe(true)
    gate.ran(['a', 'b', 'c'], 3)
    now = 10
    expect(gate.shouldRun(new Set(['a']), () => woken.push(now))).toBe(false)
    now = 11
    expect(gate.shouldRun(new Set(['a', 'b']), () => woken.push(now))).toBe(false)
    // All back: runs at once.
    expect(gate.shouldRun(new Set(['a', 'b', 'c']), () => woken.push(now))).toBe(true)
    gate.ran(['a', 'b', 'c'], 3)
    now = 20
    expect(gate.shouldRun(new Set(['a']), () => woken.push(now))).toBe(false)
    // The run's 3 ms are over: runs without the missing ones.
    now = 23
    expect(gate.shouldRun(new Set(['a']), () => woken.push(now))).toBe(true)
    // A generation that ended is not waited for; a lone generation never waits.
    gate.ran(['a', 'b'], 3)
    gate.forget('b')
    expect(gate.shouldRun(new Set(['a']), () => woken.push(now))).toBe(true)
    gate.ran(['a'], 3)
    expect(gate.shouldRun(new Set(['a']), () => woken.push(now))).toBe(true)
    gate.release()
  })

  it('wakes the stage when the wait is over', async () => {
    const gate = new BatchGate(() => performance.now(), 4)
    gate.ran(['a', 'b'], 2)
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
