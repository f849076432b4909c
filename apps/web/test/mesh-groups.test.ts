import type { MeshHealth } from '@butterfly/core'
import { describe, expect, test } from 'vitest'
import { describePeer, groupPeers } from '../src/views/mesh-groups.js'

const peer = (id: string, speed = 1000, excluded = false) => ({
  id,
  name: `peer-${id}`,
  backend: 'cpu',
  numericClass: 'cpu/fp32',
  memoryBytes: 2 ** 30,
  layerStepsPerSec: speed,
  excluded,
})

function mesh(peers: number): MeshHealth {
  const ids = Array.from({ length: peers }, (_, i) => `p${String(i).padStart(3, '0')}`)
  return {
    name: 'default',
    modelId: 'm',
    peers: ids.map((id, i) => peer(id, 1000, i === peers - 1)),
    plan: {
      version: 3,
      mesh: 'default',
      modelPath: '/models/default/',
      modelId: 'm',
      stages: [
        { start: 0, end: 2, peerId: 'p000', replicas: ['p001', 'p002'] },
        { start: 2, end: 4, peerId: 'p003' },
      ],
    },
    ready: true,
    links: [
      { peerId: 'p000', rttMs: 1, lastRttMs: 1, samples: 3 },
      { peerId: 'p001', rttMs: 5, lastRttMs: 5, samples: 3 },
      { peerId: 'p003', rttMs: 2, lastRttMs: 2, samples: 3 },
    ],
    tokensGenerated: 0,
  }
}

describe('groupPeers', () => {
  test('200 peers: the stages in plan order, then the rest, every peer exactly once', () => {
    const groups = groupPeers(mesh(200), 0)
    expect(groups.map((g) => [g.key, g.peers.length])).toEqual([
      ['stage-0', 3],
      ['stage-1', 1],
      ['idle', 196],
    ])
    const all = groups.flatMap((g) => g.peers.map((p) => p.id))
    expect(new Set(all).size).toBe(200)
    expect(groups[0]?.peers.map((p) => p.role)).toEqual([
      'stage 0 primary',
      'stage 0 replica',
      'stage 0 replica',
    ])
    expect(groups[2]?.peers.at(-1)?.state).toBe('excluded')
  })

  test("median round trips per stage, and utilisation from tokens/s and the primary's speed", () => {
    const [s0, s1, idle] = groupPeers(mesh(6), 100)
    expect(s0?.medianRttMs).toBe(3) // p000 1 ms, p001 5 ms, p002 not measured
    expect(s1?.medianRttMs).toBe(2)
    // 100 tokens/s × 2 layers ÷ 1000 layer-steps/s
    expect(s0?.utilisation).toBeCloseTo(0.2)
    expect(idle?.utilisation).toBeUndefined()
    expect(groupPeers(mesh(6), 0)[0]?.utilisation).toBeUndefined()
  })

  test("a peer's name starts with the words on its box", () => {
    const p = groupPeers(mesh(6), 0)[0]?.peers[1]
    expect(p && describePeer(p, false)).toBe(
      'peer-p001 cpu/fp32 · 5.0 ms, stage 0 replica; cpu/fp32; round trip 5.0 ms; active',
    )
    expect(p && describePeer(p)).toBe('peer-p001, stage 0 replica; cpu/fp32; round trip 5.0 ms; active')
  })
})
