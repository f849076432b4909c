import { type PeerCapacity, planPlacement, stagePeers, syntheticConfig } from '@butterfly/core'
import { describe, expect, test } from 'vitest'
import { replicatedPlan } from '../src/control/mesh-registry.js'

const config = syntheticConfig('tiny')
const GIB = 2 ** 30

function peer(id: string, memoryBytes = GIB): PeerCapacity {
  return { id, memoryBytes, tokensPerSec: 100, backend: 'cpu' }
}

const planOver = (subset: readonly PeerCapacity[]) =>
  planPlacement(config, subset, { strategy: 'uniform' }).stages

describe('replicatedPlan', () => {
  test('every peer holds a stage; r = 3 over six peers gives two stages of three', () => {
    const peers = ['a', 'b', 'c', 'd', 'e', 'f'].map((id) => peer(id))
    const stages = replicatedPlan(config, peers, 3, planOver)
    expect(stages).toHaveLength(2)
    for (const s of stages) expect(stagePeers(s)).toHaveLength(3)
    expect(stages.flatMap(stagePeers).sort()).toEqual(['a', 'b', 'c', 'd', 'e', 'f'])
  })

  test('homogeneous redundancy: replicas join the stage of their numeric class', () => {
    // The two largest peers, one of each class, become the primaries.
    const classes: Record<string, string> = {
      big32: 'cpu/fp32',
      big16: 'cpu/fp16w',
      a32: 'cpu/fp32',
      b32: 'cpu/fp32',
      a16: 'cpu/fp16w',
      b16: 'cpu/fp16w',
    }
    const peers = [
      peer('big32', 4 * GIB),
      peer('big16', 4 * GIB),
      ...['a16', 'a32', 'b16', 'b32'].map((id) => peer(id)),
    ]
    const stages = replicatedPlan(config, peers, 3, planOver, (id) => classes[id] ?? '')
    expect(stages).toHaveLength(2)
    for (const s of stages) {
      const cls = new Set(stagePeers(s).map((id) => classes[id]))
      expect(cls.size).toBe(1)
      expect(stagePeers(s)).toHaveLength(3)
    }
  })

  test('primaries are spread over the classes even when one class has all the largest peers', () => {
    const classes: Record<string, string> = {}
    const peers: PeerCapacity[] = []
    for (const [cls, mem] of [
      ['cpu/fp32', 8 * GIB],
      ['cpu/fp16w', GIB],
    ] as const) {
      for (let i = 0; i < 5; i++) {
        const id = `${cls.slice(4)}-${i}`
        classes[id] = cls
        peers.push(peer(id, mem))
      }
    }
    const stages = replicatedPlan(config, peers, 5, planOver, (id) => classes[id] ?? '')
    expect(stages).toHaveLength(2)
    const perStage = stages.map((s) => new Set(stagePeers(s).map((id) => classes[id])))
    expect(perStage.map((c) => c.size)).toEqual([1, 1])
    expect(new Set(perStage.map((c) => [...c][0])).size).toBe(2)
  })

  test('a peer of a class no stage has still serves, on the stage with the fewest replicas', () => {
    const classes: Record<string, string> = { p: 'cpu/fp32', q: 'cpu/fp32', x: 'webgpu/fp16' }
    const peers = [peer('p', 4 * GIB), peer('q'), peer('x')]
    const stages = replicatedPlan(config, peers, 3, planOver, (id) => classes[id] ?? '')
    expect(stages).toHaveLength(1)
    expect(stagePeers(stages[0] as (typeof stages)[0]).sort()).toEqual(['p', 'q', 'x'])
  })

  test('a replica never lands on a stage its memory cannot hold', () => {
    const peers = [peer('a', 4 * GIB), peer('b', 4 * GIB), peer('tiny', 1024)]
    const stages = replicatedPlan(config, peers, 1, planOver)
    expect(stages.flatMap(stagePeers)).not.toContain('tiny')
  })
})
