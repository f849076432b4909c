import { create } from 'zustand'
import { ApiFailure } from '../api/sse-events.js'
import type { MeshInfo } from './mesh-store.js'

/** A model the server serves, with the mesh that runs it. */
export interface ModelChoice {
  readonly id: string
  readonly mesh: string | undefined
  /** Every stage of the mesh's plan has loaded its layers. */
  readonly ready: boolean
  readonly peers: number
  /** The model's files (weights, tokenizer, config), from the mesh's manifest. */
  readonly sizeBytes: number | undefined
}

export interface ModelState {
  readonly models: readonly ModelChoice[]
  readonly error: string | undefined
  refresh(): Promise<void>
}

const sizes = new Map<string, number>()

async function sizeOf(mesh: string): Promise<number | undefined> {
  const known = sizes.get(mesh)
  if (known !== undefined) return known
  const res = await fetch(`/models/${encodeURIComponent(mesh)}/manifest.json`).catch(() => undefined)
  if (!res?.ok) return undefined
  const body = (await res.json()) as { files?: Record<string, { size?: number }> }
  const total = Object.values(body.files ?? {}).reduce((n, f) => n + (f.size ?? 0), 0)
  sizes.set(mesh, total)
  return total
}

/** The server's models (/v1/models) joined with their meshes' readiness (/health). */
export const useModels = create<ModelState>((set) => ({
  models: [],
  error: undefined,
  async refresh() {
    try {
      const [list, health] = await Promise.all([
        fetch('/v1/models').then((r) => r.json() as Promise<{ data?: Array<{ id?: unknown }> }>),
        fetch('/health').then((r) => r.json() as Promise<{ meshes?: MeshInfo[] }>),
      ])
      const ids = (list.data ?? []).map((m) => m.id).filter((id): id is string => typeof id === 'string')
      const models = await Promise.all(
        ids.map(async (id): Promise<ModelChoice> => {
          const mesh = health.meshes?.find((m) => m.modelId === id)
          return {
            id,
            mesh: mesh?.name,
            ready: mesh?.ready ?? false,
            peers: mesh?.peers.length ?? 0,
            sizeBytes: mesh ? await sizeOf(mesh.name) : undefined,
          }
        }),
      )
      set({ models, error: undefined })
    } catch {
      set({ error: 'cannot reach the server to list its models' })
    }
  },
}))

/** The chosen model if the server still serves it, else the first it lists. */
export async function resolveModel(chosen: string | undefined): Promise<string> {
  if (useModels.getState().models.length === 0) await useModels.getState().refresh()
  const models = useModels.getState().models
  const pick = models.find((m) => m.id === chosen) ?? models[0]
  if (pick === undefined) throw new ApiFailure('the server serves no model yet', 'no_model', 503)
  return pick.id
}
