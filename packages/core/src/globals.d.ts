// core compiles with no DOM and no Node types. These Web-platform globals exist in every
// environment we run in (browsers, workers, Node >= 18), so we declare the small surface we use.
declare class TextEncoder {
  encode(input?: string): Uint8Array
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean; ignoreBOM?: boolean })
  decode(input?: ArrayBufferView | ArrayBuffer, options?: { stream?: boolean }): string
}
interface AbortSignal {
  readonly aborted: boolean
  readonly reason: unknown
  throwIfAborted(): void
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void
  removeEventListener(type: 'abort', listener: () => void): void
}
// Timers and AbortController exist in every JS runtime we target; only their return types differ.
declare function setTimeout(handler: () => void, ms?: number): unknown
declare function clearTimeout(id: unknown): void
declare class AbortController {
  readonly signal: AbortSignal
  abort(reason?: unknown): void
}
declare function setInterval(handler: () => void, timeout?: number): unknown
declare function clearInterval(id: unknown): void
// fetch and performance.now, as every runtime we target has them; only what core uses.
interface CoreFetchResponse {
  readonly ok: boolean
  readonly status: number
  readonly headers: { get(name: string): string | null }
  readonly body: { cancel(): Promise<void> } | null
  json(): Promise<unknown>
  arrayBuffer(): Promise<ArrayBuffer>
}
declare function fetch(
  url: string,
  init?: { method?: string; headers?: Record<string, string>; signal?: AbortSignal },
): Promise<CoreFetchResponse>
declare const performance: { now(): number }
