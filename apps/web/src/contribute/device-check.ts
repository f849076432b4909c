import type { Device } from './stage-worker.js'

/** What the WebGPU check found: the device to use, and why, in words. */
export interface DeviceChoice {
  readonly device: Device
  /** The adapter's vendor and architecture, when WebGPU is used. */
  readonly adapter: string | undefined
  /** Why this device: for WASM, what stopped WebGPU. */
  readonly reason: string
  /** The largest single buffer the adapter allows, in bytes (WebGPU only). */
  readonly maxBufferBytes: number | undefined
}

interface GpuAdapterLike {
  readonly info?: { vendor?: string; architecture?: string; isFallbackAdapter?: boolean }
  readonly limits?: { maxBufferSize?: number }
}

/**
 * WebGPU when the browser offers an adapter (and the page does not ask for WASM), else WASM,
 * with the reason either way, so the page can say why a tab computes on the CPU.
 */
export async function chooseDevice(): Promise<DeviceChoice> {
  const wasm = (reason: string): DeviceChoice => ({
    device: 'wasm',
    adapter: undefined,
    reason,
    maxBufferBytes: undefined,
  })
  if (new URLSearchParams(location.search).get('device') === 'wasm')
    return wasm('WASM because the page asked for it (?device=wasm)')
  const gpu = (navigator as { gpu?: { requestAdapter(): Promise<GpuAdapterLike | null> } }).gpu
  if (gpu === undefined)
    return wasm(
      globalThis.isSecureContext
        ? 'WASM: this browser does not offer WebGPU'
        : 'WASM: WebGPU needs a secure context (https or localhost)',
    )
  let adapter: GpuAdapterLike | null
  try {
    adapter = await gpu.requestAdapter()
  } catch (err) {
    return wasm(`WASM: asking for a WebGPU adapter failed (${(err as Error).message})`)
  }
  if (adapter === null)
    return wasm(
      'WASM: the browser has WebGPU but offered no GPU adapter (no GPU, a blocked driver, or WebGPU turned off)',
    )
  const info = adapter.info
  const name = [info?.vendor, info?.architecture].filter(Boolean).join(' ') || 'WebGPU'
  return {
    device: 'webgpu',
    adapter: name,
    reason: info?.isFallbackAdapter
      ? `WebGPU on a software adapter (${name}): correct, but slower than a GPU`
      : `WebGPU on ${name}`,
    maxBufferBytes: adapter.limits?.maxBufferSize,
  }
}
