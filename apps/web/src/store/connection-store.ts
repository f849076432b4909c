import { create } from 'zustand'

export type Connection = 'unknown' | 'online' | 'lost' | 'back'

export interface ConnectionState {
  readonly state: Connection
  /** When the server stopped answering (ms since the epoch). */
  readonly lostAt: number | undefined
  /** How long it was away, once it is back. */
  readonly awayMs: number | undefined
  check(): Promise<void>
}

/** Whether the server answers /health: the banner says when it is lost and when it is back. */
export const useConnection = create<ConnectionState>((set, get) => ({
  state: 'unknown',
  lostAt: undefined,
  awayMs: undefined,
  async check() {
    const ok = await fetch('/health', { cache: 'no-store' })
      .then((r) => r.ok)
      .catch(() => false)
    const { state, lostAt } = get()
    if (!ok) {
      if (state !== 'lost') set({ state: 'lost', lostAt: Date.now(), awayMs: undefined })
      return
    }
    if (state === 'lost')
      set({ state: 'back', awayMs: Date.now() - (lostAt ?? Date.now()), lostAt: undefined })
    else if (state === 'unknown') set({ state: 'online' })
  },
}))

/** Waits until the server answers /health again, checking every `everyMs`. */
export async function whenServerAnswers(signal: AbortSignal, everyMs = 1000): Promise<void> {
  for (;;) {
    signal.throwIfAborted()
    const ok = await fetch('/health', { cache: 'no-store', signal })
      .then((r) => r.ok)
      .catch(() => false)
    if (ok) return
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}
