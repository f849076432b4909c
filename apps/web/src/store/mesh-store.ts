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

export interface MeshInfo {
  readonly name: string
  readonly modelId: string
  readonly ready: boolean
  readonly peers: readonly MeshPeer[]
  readonly plan: { readonly version: number; readonly stages: readonly MeshStage[] }
  readonly planError?: { readonly message: string }
  readonly reputation?: { readonly peers: readonly PeerVotes[] }
}

export interface MeshState {
  readonly meshes: readonly MeshInfo[]
  readonly error: string | undefined
  readonly updatedAt: number
  refresh(signal?: AbortSignal): Promise<void>
}

/** The mesh as /health reports it, refreshed by the mesh view while it is open. */
export const useMesh = create<MeshState>((set) => ({
  meshes: [],
  error: undefined,
  updatedAt: 0,
  async refresh(signal) {
    try {
      const res = await fetch('/health', signal ? { signal } : {})
      if (!res.ok) throw new Error(`the server answered ${res.status}`)
      const body = (await res.json()) as { meshes?: MeshInfo[] }
      set({ meshes: body.meshes ?? [], error: undefined, updatedAt: Date.now() })
    } catch (err) {
      if (signal?.aborted) return
      set({ error: `cannot reach the server: ${(err as Error).message}` })
    }
  },
}))
