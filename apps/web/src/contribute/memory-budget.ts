import type { DeviceChoice } from './device-check.js'

/** A memory budget the browser's own limits allow, with the figures it came from. */
export interface BudgetSuggestion {
  readonly gib: number
  readonly why: string
}

const GIB = 2 ** 30
// A 32-bit WASM heap addresses at most 4 GiB; leave room for the runtime's own allocations.
const WASM_CEILING = 3.5

/**
 * Half the device memory the browser reports (navigator.deviceMemory, rounded down and capped
 * by the browser), never more than WASM can address; on WebGPU also no more than eight of the
 * adapter's largest buffers. Weights are kept in Cache Storage, so the storage quota caps it too.
 */
export async function suggestBudget(choice: DeviceChoice): Promise<BudgetSuggestion> {
  const facts: string[] = []
  let gib = 1
  const deviceMemory = (navigator as { deviceMemory?: number }).deviceMemory
  if (typeof deviceMemory === 'number' && deviceMemory > 0) {
    gib = deviceMemory / 2
    facts.push(`the browser reports about ${deviceMemory} GiB of memory (half is suggested)`)
  } else {
    facts.push('the browser does not report its memory, so 1 GiB is suggested')
  }
  if (choice.device === 'wasm') {
    if (gib > WASM_CEILING) facts.push(`WASM addresses at most 4 GiB`)
    gib = Math.min(gib, WASM_CEILING)
  } else if (choice.maxBufferBytes !== undefined) {
    const cap = (8 * choice.maxBufferBytes) / GIB
    facts.push(`the GPU adapter allows buffers of up to ${(choice.maxBufferBytes / GIB).toFixed(1)} GiB`)
    gib = Math.min(gib, cap)
  }
  const quota = await navigator.storage?.estimate?.().catch(() => undefined)
  if (quota?.quota !== undefined) {
    const free = (quota.quota - (quota.usage ?? 0)) / GIB
    facts.push(`${free.toFixed(1)} GiB of storage is free for cached weights`)
    gib = Math.min(gib, free)
  }
  // Quarter steps, as the budget field takes them, and at least the field's minimum.
  const rounded = Math.max(0.25, Math.floor(gib * 4) / 4)
  return { gib: rounded, why: facts.join('; ') }
}
