import type { Pipeline, StageSession } from '@butterfly/core'
import { describe, expect, test } from 'vitest'
import { PipelineLeases } from '../src/gateway/pipeline-leases.js'

// Unit test of the bookkeeping with stand-in stages that count their disposals; the real
// stages and connections are pipeline-retirement.test.ts's.

function pipeline(): { pipeline: Pipeline; disposed: () => number } {
  let n = 0
  const stage = { dispose: async () => void n++ } as unknown as StageSession
  return { pipeline: { stages: [stage, stage], maxContext: 64 }, disposed: () => n }
}

const nextTask = () => new Promise<void>((resolve) => setImmediate(resolve))

describe('PipelineLeases', () => {
  test('a replaced pipeline goes only when its last generation lets go, once', async () => {
    const leases = new PipelineLeases()
    const a = pipeline()
    const b = pipeline()
    leases.adopt({ pipeline: a.pipeline })
    const first = leases.acquire(a.pipeline)
    const second = leases.acquire(a.pipeline)
    leases.adopt({ pipeline: b.pipeline })
    expect(leases.current?.pipeline).toBe(b.pipeline)
    await nextTask()
    expect(a.disposed()).toBe(0)
    expect(leases.stats()).toEqual({ retiring: 1, disposed: 0, held: 2 })
    first()
    first() // a second call releases nothing more
    expect(a.disposed()).toBe(0)
    second()
    expect(a.disposed()).toBe(2)
    expect(leases.stats()).toEqual({ retiring: 0, disposed: 1, held: 0 })
    expect(b.disposed()).toBe(0)
  })

  test('a generation handed the pipeline in the same task as its retirement keeps it', async () => {
    const leases = new PipelineLeases()
    const a = pipeline()
    leases.adopt({ pipeline: a.pipeline })
    leases.adopt({ pipeline: pipeline().pipeline })
    const release = leases.acquire(a.pipeline)
    await nextTask()
    expect(a.disposed()).toBe(0)
    release()
    expect(a.disposed()).toBe(2)
  })

  test('a relayed twin that was built is retired with its plan, unless it is kept', async () => {
    const leases = new PipelineLeases()
    const chain = pipeline()
    const relayed = pipeline()
    const built = Promise.resolve(relayed.pipeline)
    leases.adopt({ pipeline: chain.pipeline, relayedIfBuilt: () => built })
    // The chain's fallback: its relayed twin becomes current, the chain goes.
    leases.adopt({ pipeline: relayed.pipeline })
    await built
    await nextTask()
    expect(chain.disposed()).toBe(2)
    expect(relayed.disposed()).toBe(0)
    // A re-plan: both go.
    const other = pipeline()
    leases.adopt({ pipeline: other.pipeline, relayedIfBuilt: () => built })
    leases.retireBuilt({ pipeline: other.pipeline, relayedIfBuilt: () => built })
    await built
    await nextTask()
    expect(relayed.disposed()).toBe(2)
    expect(other.disposed()).toBe(2)
    expect(leases.stats()).toEqual({ retiring: 0, disposed: 3, held: 0 })
  })

  test('a stage that fails to dispose is reported, and the others still go', async () => {
    const errors: unknown[] = []
    const leases = new PipelineLeases((err) => errors.push(err))
    let good = 0
    const bad = { dispose: () => Promise.reject(new Error('stuck')) } as unknown as StageSession
    const fine = { dispose: async () => void good++ } as unknown as StageSession
    leases.adopt({ pipeline: { stages: [bad, fine], maxContext: 8 } })
    leases.adopt({ pipeline: pipeline().pipeline })
    await nextTask()
    await nextTask()
    expect(good).toBe(1)
    expect(errors.map((e) => (e as Error).message)).toEqual(['stuck'])
  })
})
