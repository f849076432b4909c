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
import { whenServerAnswers } from '../store/connection-store.js'
import { chooseDevice, type DeviceChoice } from './device-check.js'
import { type BudgetSuggestion, suggestBudget } from './memory-budget.js'
import { type MeshReading, readMesh } from './mesh-reading.js'
import type { Device } from './stage-worker.js'
import { browserTensorCache, type CacheCounts } from './tensor-cache.js'
import { createWorkerBackend } from './worker-backend.js'

export type ContributeStatus = 'off' | 'starting' | 'on' | 'stopping' | 'error'

/** What the tab is doing, step by step, for the sentence the view shows. */
export type ContributePhase =
  | 'idle'
  | 'checking'
  | 'joining'
  | 'waiting'
  | 'downloading'
  | 'loading'
  | 'serving'
  | 'stopping'
  | 'reconnecting'
  | 'error'

export interface DownloadProgress {
  readonly done: number
  readonly total: number
  readonly startedAt: number
  readonly updatedAt: number
}

export interface ContributeState {
  readonly status: ContributeStatus
  readonly phase: ContributePhase
  readonly device: Device | undefined
  readonly adapter: string | undefined
  /** Why this device (for WASM: what stopped WebGPU), in words. */
  readonly deviceReason: string | undefined
  readonly suggestion: BudgetSuggestion | undefined
  readonly peerId: string | undefined
  readonly memoryGiB: number
  /** The layers the plan gives this tab (from /health), loaded or not yet. */
  readonly assigned: { start: number; end: number } | undefined
  readonly layers: { start: number; end: number } | undefined
  readonly download: DownloadProgress | undefined
  readonly stepsServed: number
  /** Tokens the mesh generated while this tab held layers of its plan. */
  readonly tokensHelped: number
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
  /** Runs the WebGPU check and the memory suggestion (once; the view calls it when shown). */
  check(): Promise<void>
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

let node: WorkerNode | undefined
let terminate: (() => void) | undefined
let poll: ReturnType<typeof setInterval> | undefined
let checked: Promise<DeviceChoice> | undefined
/** Aborts the wait for a lost server to come back (the user turned contributing off). */
let reconnecting: AbortController | undefined
/** The mesh's token count when this tab last started serving, for "tokens helped". */
let servingSince: number | undefined

const same = (a: { start: number; end: number } | undefined, b: { start: number; end: number } | undefined) =>
  a?.start === b?.start && a?.end === b?.end

/** "Contribute this GPU": the tab joins the mesh as a worker and serves whatever stage it is given. */
export const useContribute = create<ContributeState>((set, get) => {
  /** One poll: the node's counters and the mesh's view of this peer; the phase follows from both. */
  function observe(reading: MeshReading | undefined): void {
    if (node === undefined) return
    const layers = node.stage
    const assigned = reading ? reading.assigned : get().assigned
    // A new range (a re-plan) starts a new download; the first reading only names the range.
    const replanned = get().assigned !== undefined && !same(assigned, get().assigned)
    const download = replanned ? undefined : get().download
    let tokensHelped = get().tokensHelped
    if (layers && reading) {
      servingSince ??= reading.tokensGenerated
      tokensHelped += Math.max(0, reading.tokensGenerated - servingSince)
      servingSince = reading.tokensGenerated
    } else servingSince = undefined
    // Bytes arriving mean a download even before /health names the layers.
    const phase: ContributePhase = layers
      ? 'serving'
      : download !== undefined
        ? download.done >= download.total
          ? 'loading'
          : 'downloading'
        : assigned === undefined
          ? 'waiting'
          : 'downloading'
    set({
      phase,
      layers,
      assigned,
      download,
      tokensHelped,
      stepsServed: node.stepsServed,
      bytesIn: node.bytes.in,
      bytesOut: node.bytes.out,
      ...(reading ? { votes: reading.votes } : {}),
    })
  }

  /**
   * The server dropped this tab (it restarted, or missed heartbeats): hand the stage back, wait
   * until the server answers again, and join afresh (the same key, so the same peer id).
   */
  async function rejoin(reason: string): Promise<void> {
    clearInterval(poll)
    const old = node
    node = undefined
    servingSince = undefined
    set({ status: 'starting', phase: 'reconnecting', error: reason, layers: undefined, assigned: undefined })
    await old?.stop({ drainMs: 0 }).catch(() => undefined)
    terminate?.()
    const ctl = new AbortController()
    reconnecting = ctl
    try {
      await whenServerAnswers(ctl.signal)
    } catch {
      return // turned off while waiting
    }
    if (reconnecting !== ctl) return
    reconnecting = undefined
    set({ status: 'off' })
    await get().start()
  }

  return {
    status: 'off',
    phase: 'idle',
    device: undefined,
    adapter: undefined,
    deviceReason: undefined,
    suggestion: undefined,
    peerId: undefined,
    memoryGiB: 1,
    assigned: undefined,
    layers: undefined,
    download: undefined,
    stepsServed: 0,
    tokensHelped: 0,
    bytesIn: 0,
    bytesOut: 0,
    cached: 0,
    downloaded: 0,
    votes: undefined,
    log: [],
    error: undefined,
    setMemory: (gib) => set({ memoryGiB: gib }),
    async check() {
      if (checked === undefined) {
        set({ phase: get().phase === 'idle' ? 'checking' : get().phase })
        checked = chooseDevice()
        const choice = await checked
        const suggestion = await suggestBudget(choice).catch(() => undefined)
        set({ device: choice.device, adapter: choice.adapter, deviceReason: choice.reason, suggestion })
        if (get().phase === 'checking') set({ phase: 'idle' })
      }
      await checked
    },
    async start() {
      if (get().status !== 'off' && get().status !== 'error') return
      set({
        status: 'starting',
        phase: 'checking',
        error: undefined,
        log: [],
        tokensHelped: 0,
        download: undefined,
      })
      try {
        await get().check()
        const device = get().device ?? 'wasm'
        set({ phase: 'joining' })
        const backend = createWorkerBackend(device)
        terminate = backend.terminate
        const health = (await (await fetch('/health')).json()) as { meshes?: Array<{ name: string }> }
        const mesh = health.meshes?.[0]?.name ?? 'default'
        const counts: CacheCounts = { hits: 0, misses: 0 }
        const tensorCache = await browserTensorCache(counts)
        node = await startWorkerNode(
          {
            serverUrl: location.origin,
            mesh,
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
            onDownload: (done, total) => {
              const now = performance.now()
              const before = get().download
              const startedAt = before && before.done < done ? before.startedAt : now
              set({
                download: { done, total, startedAt, updatedAt: now },
                phase: done >= total ? 'loading' : 'downloading',
                cached: counts.hits,
                downloaded: counts.misses,
              })
            },
          },
        )
        // The plan may already have started the download while the join returned.
        set({ status: 'on', peerId: node.peerId, ...(get().phase === 'joining' ? { phase: 'waiting' } : {}) })
        const mine = node
        void node.disconnected.then((reason) => {
          if (node === mine) void rejoin(reason)
        })
        const me = node.peerId
        poll = setInterval(() => {
          void readMesh(mesh, me).then(observe)
        }, 500)
      } catch (err) {
        terminate?.()
        set({ status: 'error', phase: 'error', error: (err as Error).message })
      }
    },
    async stop() {
      if (get().phase === 'reconnecting') {
        reconnecting?.abort()
        reconnecting = undefined
        set({ status: 'off', phase: 'idle', error: undefined })
        return
      }
      if (get().status !== 'on') return
      set({ status: 'stopping', phase: 'stopping' })
      clearInterval(poll)
      await node?.stop().catch(() => undefined)
      terminate?.()
      node = undefined
      servingSince = undefined
      set({ status: 'off', phase: 'idle', layers: undefined, assigned: undefined })
    },
  }
})

// Closing the tab hands the stage back: the server re-plans at once instead of waiting for
// missed heartbeats.
addEventListener('pagehide', () => {
  void useContribute.getState().stop()
})
