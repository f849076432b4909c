import { create } from 'zustand'
import { streamCompletion } from '../api/stream-completion.js'
import type { Piece } from '../api/token-pieces.js'
import { resolveModel } from './model-store.js'
import { useSettings } from './settings-store.js'

export type RawStatus = 'idle' | 'streaming' | 'done' | 'stopped' | 'error'

export interface RawState {
  readonly prompt: string
  readonly pieces: readonly Piece[]
  readonly selected: number | undefined
  readonly tokens: number
  readonly tokensPerSec: number
  readonly status: RawStatus
  readonly error: string | undefined
  setPrompt(prompt: string): void
  select(index: number): void
  send(): Promise<void>
  stop(): void
}

let controller: AbortController | undefined

/** Raw completion mode: one prompt sent without the chat template, and its completion. */
export const useRaw = create<RawState>((set, get) => ({
  prompt: '',
  pieces: [],
  selected: undefined,
  tokens: 0,
  tokensPerSec: 0,
  status: 'idle',
  error: undefined,
  setPrompt: (prompt) => set({ prompt }),
  select: (index) => set({ selected: index }),
  async send() {
    controller?.abort()
    const mine = new AbortController()
    controller = mine
    set({
      pieces: [],
      selected: undefined,
      tokens: 0,
      tokensPerSec: 0,
      status: 'streaming',
      error: undefined,
    })
    let first = 0
    let last = 0
    const rate = (n: number) => (last > first ? (n - 1) / ((last - first) / 1000) : 0)
    try {
      const { sampling, model } = useSettings.getState()
      const result = await streamCompletion(
        await resolveModel(model),
        get().prompt,
        sampling,
        (piece) => {
          last = performance.now()
          if (first === 0) first = last
          const tokens = get().tokens + Math.max(1, piece.tokens.length)
          set({ pieces: [...get().pieces, piece], tokens, tokensPerSec: rate(tokens) })
        },
        mine.signal,
      )
      if (controller !== mine) return
      const tokens = result.completionTokens ?? get().tokens
      set({ status: 'done', tokens, tokensPerSec: rate(tokens) })
    } catch (err) {
      if (controller !== mine) return
      if (mine.signal.aborted) set({ status: 'stopped' })
      else set({ status: 'error', error: (err as Error).message })
    }
  },
  stop() {
    controller?.abort()
  },
}))
