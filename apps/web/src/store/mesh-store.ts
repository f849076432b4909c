import type { HealthPeer, LinkStat, MeshHealth, PeerReputation, PlanStage } from '@butterfly/core'
import { create } from 'zustand'

// The /health contract is core's (mesh/health-report.ts); these names are the web app's for it.
export type MeshPeer = HealthPeer
export type MeshStage = PlanStage
/** One peer's vote record, from the gateway. */
export type PeerVotes = PeerReputation
/** The gateway's WebRTC link to one worker, pinged every 2 s over the step channel. */
export type LinkInfo = LinkStat
export type MeshInfo = MeshHealth

/** One point of a mesh's throughput chart: tokens/s over the interval ending at `at`. */
export interface ThroughputSample {
  readonly at: number
  readonly tokensPerSec: number
}

/** How many points a chart keeps (2 s apart: about two minutes). */
export const THROUGHPUT_POINTS = 60

export interface MeshState {
  readonly meshes: readonly MeshInfo[]
  readonly error: string | undefined
  readonly updatedAt: number
  /** Per mesh name, the rate at which the gateway generated tokens between refreshes. */
  readonly throughput: Readonly<Record<string, readonly ThroughputSample[]>>
  refresh(signal?: AbortSignal): Promise<void>
}

/** The mesh as /health reports it, refreshed by the mesh view while it is open. */
export const useMesh = create<MeshState>((set, get) => ({
  meshes: [],
  error: undefined,
  updatedAt: 0,
  throughput: {},
  async refresh(signal) {
    try {
      const res = await fetch('/health', signal ? { signal } : {})
      if (!res.ok) throw new Error(`the server answered ${res.status}`)
      const body = (await res.json()) as { meshes?: MeshInfo[] }
      const meshes = body.meshes ?? []
      const now = Date.now()
      const before = get()
      set({ meshes, error: undefined, updatedAt: now, throughput: nextThroughput(before, meshes, now) })
    } catch (err) {
      if (signal?.aborted) return
      set({ error: `cannot reach the server: ${(err as Error).message}` })
    }
  },
}))

/** Appends each mesh's rate since the previous refresh; a server restart (count going down) restarts the chart. */
function nextThroughput(
  before: Pick<MeshState, 'meshes' | 'updatedAt' | 'throughput'>,
  meshes: readonly MeshInfo[],
  now: number,
): Record<string, readonly ThroughputSample[]> {
  const out: Record<string, readonly ThroughputSample[]> = {}
  const dt = (now - before.updatedAt) / 1000
  for (const m of meshes) {
    const prev = before.meshes.find((p) => p.name === m.name)
    const history = before.throughput[m.name] ?? []
    const count = m.tokensGenerated ?? 0
    const prevCount = prev?.tokensGenerated ?? 0
    if (prev === undefined || count < prevCount || dt <= 0) {
      out[m.name] = []
      continue
    }
    out[m.name] = [...history, { at: now, tokensPerSec: (count - prevCount) / dt }].slice(-THROUGHPUT_POINTS)
  }
  return out
}
