import { create } from 'zustand'

export interface MeshPeer {
  readonly id: string
  readonly name: string
  readonly backend: string
  readonly numericClass: string
  readonly memoryBytes: number
  readonly layerStepsPerSec: number
  readonly excluded: boolean
}

export interface MeshStage {
  readonly start: number
  readonly end: number
  readonly peerId: string
  readonly replicas?: readonly string[]
}

export interface PeerVotes {
  readonly peerId: string
  readonly agreements: number
  readonly disagreements: number
  readonly timeouts: number
  readonly flagged: boolean
  readonly trusted: boolean
}

/** The gateway's WebRTC link to one worker, pinged every 2 s over the step channel. */
export interface LinkInfo {
  readonly peerId: string
  readonly rttMs: number
  readonly samples: number
}

export interface MeshInfo {
  readonly name: string
  readonly modelId: string
  readonly ready: boolean
  readonly peers: readonly MeshPeer[]
  readonly plan: { readonly version: number; readonly stages: readonly MeshStage[] }
  readonly planError?: { readonly message: string }
  readonly reputation?: { readonly peers: readonly PeerVotes[] }
  readonly links?: readonly LinkInfo[]
  readonly tokensGenerated?: number
}

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
