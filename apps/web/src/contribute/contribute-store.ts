import {
  fromBase64url,
  generateIdentity,
  identityFromSecret,
  type PeerIdentity,
  startWorkerNode,
  toBase64url,
  type WorkerNode,
} from '@butterfly/core'
import { create } from 'zustand'
import type { Device } from './stage-worker.js'
import { browserTensorCache, type CacheCounts } from './tensor-cache.js'
import { createWorkerBackend } from './worker-backend.js'

export type ContributeStatus = 'off' | 'starting' | 'on' | 'stopping' | 'error'

export interface ContributeState {
  readonly status: ContributeStatus
  readonly device: Device | undefined
  readonly adapter: string | undefined
  readonly peerId: string | undefined
  readonly memoryGiB: number
  readonly layers: { start: number; end: number } | undefined
  readonly stepsServed: number
  readonly bytesIn: number
  readonly bytesOut: number
  /** Tensors of the hosted layers loaded from this browser's cache, and downloaded. */
  readonly cached: number
  readonly downloaded: number
  /** This peer's votes, from the server's /health. */
  readonly votes: { agreements: number; disagreements: number } | undefined
  readonly log: readonly string[]
  readonly error: string | undefined
  setMemory(gib: number): void
  start(): Promise<void>
  stop(): Promise<void>
}

const IDENTITY_KEY = 'butterfly-identity'

/** The tab's long-lived key, kept in localStorage so a returning tab is the same peer. */
function tabIdentity(): PeerIdentity {
  const saved = localStorage.getItem(IDENTITY_KEY)
  if (saved !== null) {
    try {
      const secret = fromBase64url(saved)
      if (secret !== undefined) return identityFromSecret(secret)
    } catch {
      // a damaged entry is replaced below
    }
  }
  const id = generateIdentity()
  localStorage.setItem(IDENTITY_KEY, toBase64url(id.secretKey))
  return id
}

/** WebGPU when the browser offers an adapter (and the page does not ask for WASM), else WASM. */
async function pickDevice(): Promise<{ device: Device; adapter: string | undefined }> {
  const forced = new URLSearchParams(location.search).get('device')
  const gpu = (
    navigator as {
      gpu?: { requestAdapter(): Promise<{ info?: { vendor?: string; architecture?: string } } | null> }
    }
  ).gpu
  if (forced !== 'wasm' && gpu !== undefined) {
    const adapter = await gpu.requestAdapter().catch(() => null)
    if (adapter !== null) {
      const info = adapter.info
      return {
        device: 'webgpu',
        adapter: [info?.vendor, info?.architecture].filter(Boolean).join(' ') || 'WebGPU',
      }
    }
  }
  return { device: 'wasm', adapter: undefined }
}

/** This peer's agreements and disagreements as the gateway counted them. */
async function votesOf(peerId: string): Promise<{ agreements: number; disagreements: number } | undefined> {
  const res = await fetch('/health').catch(() => undefined)
  if (!res?.ok) return undefined
  const body = (await res.json()) as {
    meshes?: Array<{
      reputation?: { peers?: Array<{ peerId: string; agreements: number; disagreements: number }> }
    }>
  }
  const mine = body.meshes?.flatMap((m) => m.reputation?.peers ?? []).find((p) => p.peerId === peerId)
  return mine && { agreements: mine.agreements, disagreements: mine.disagreements }
}

let node: WorkerNode | undefined
let terminate: (() => void) | undefined
let poll: ReturnType<typeof setInterval> | undefined

/** "Contribute this GPU": the tab joins the mesh as a worker and serves whatever stage it is given. */
export const useContribute = create<ContributeState>((set, get) => ({
  status: 'off',
  device: undefined,
  adapter: undefined,
  peerId: undefined,
  memoryGiB: 1,
  layers: undefined,
  stepsServed: 0,
  bytesIn: 0,
  bytesOut: 0,
  cached: 0,
  downloaded: 0,
  votes: undefined,
  log: [],
  error: undefined,
  setMemory: (gib) => set({ memoryGiB: gib }),
  async start() {
    if (get().status !== 'off' && get().status !== 'error') return
    set({ status: 'starting', error: undefined, log: [] })
    try {
      const { device, adapter } = await pickDevice()
      set({ device, adapter })
      const backend = createWorkerBackend(device)
      terminate = backend.terminate
      const health = (await (await fetch('/health')).json()) as { meshes?: Array<{ name: string }> }
      const counts: CacheCounts = { hits: 0, misses: 0 }
      const tensorCache = await browserTensorCache(counts)
      node = await startWorkerNode(
        {
          serverUrl: location.origin,
          mesh: health.meshes?.[0]?.name ?? 'default',
          token: '',
          name: `tab-${device}`,
          memoryBytes: Math.round(get().memoryGiB * 2 ** 30),
          backendName: device,
        },
        {
          backend,
          wrtc: undefined,
          identity: tabIdentity(),
          ...(tensorCache ? { tensorCache } : {}),
          log: (line) => set({ log: [...get().log.slice(-19), line] }),
        },
      )
      set({ status: 'on', peerId: node.peerId })
      const me = node.peerId
      poll = setInterval(() => {
        if (node)
          set({
            layers: node.stage,
            stepsServed: node.stepsServed,
            bytesIn: node.bytes.in,
            bytesOut: node.bytes.out,
            cached: counts.hits,
            downloaded: counts.misses,
          })
        void votesOf(me).then((votes) => set({ votes }))
      }, 500)
    } catch (err) {
      terminate?.()
      set({ status: 'error', error: (err as Error).message })
    }
  },
  async stop() {
    if (get().status !== 'on') return
    set({ status: 'stopping' })
    clearInterval(poll)
    await node?.stop().catch(() => undefined)
    terminate?.()
    node = undefined
    set({ status: 'off', layers: undefined })
  },
}))

// Closing the tab hands the stage back: the server re-plans at once instead of waiting for
// missed heartbeats.
addEventListener('pagehide', () => {
  void useContribute.getState().stop()
})
