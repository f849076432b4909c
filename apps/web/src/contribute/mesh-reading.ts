import type { MeshHealth } from '@butterfly/core'

/** What /health says about this tab: the layers the plan gives it, its votes, the mesh's token count. */
export interface MeshReading {
  readonly assigned: { start: number; end: number } | undefined
  readonly votes: { agreements: number; disagreements: number } | undefined
  readonly tokensGenerated: number
}

/** Undefined when the server cannot be reached (the view keeps what it last knew). */
export async function readMesh(mesh: string, peerId: string): Promise<MeshReading | undefined> {
  const res = await fetch('/health').catch(() => undefined)
  if (!res?.ok) return undefined
  const body = (await res.json().catch(() => undefined)) as { meshes?: MeshHealth[] } | undefined
  const m = body?.meshes?.find((x) => x.name === mesh)
  if (m === undefined) return undefined
  const stage = m.plan.stages.find((s) => s.peerId === peerId || (s.replicas ?? []).includes(peerId))
  const mine = m.reputation?.peers.find((p) => p.peerId === peerId)
  return {
    assigned: stage && { start: stage.start, end: stage.end },
    votes: mine && { agreements: mine.agreements, disagreements: mine.disagreements },
    tokensGenerated: m.tokensGenerated,
  }
}
