import { create } from 'zustand'
import { type CompletionParams, streamCompletion, type TokenProvenance } from '../api/stream-completion.js'

export type ChatStatus = 'idle' | 'streaming' | 'done' | 'stopped' | 'error'

/** A piece of streamed text and the tokens that produced it. */
export interface Piece {
  readonly text: string
  readonly tokens: readonly TokenProvenance[]
}

export interface ChatState {
  readonly params: CompletionParams
  readonly output: string
  readonly pieces: readonly Piece[]
  /** Index of the piece whose provenance is shown. */
  readonly selected: number | undefined
  readonly tokens: number
  readonly tokensPerSec: number
  readonly status: ChatStatus
  readonly error: string | undefined
  setParams(p: Partial<CompletionParams>): void
  select(index: number | undefined): void
  send(): Promise<void>
  stop(): void
}

let controller: AbortController | undefined

/** The chat view's state: the request's parameters, the streamed text, speed and errors. */
export const useChat = create<ChatState>((set, get) => ({
  params: { prompt: '', maxTokens: 64, temperature: 0, topP: 1, seed: 0 },
  output: '',
  pieces: [],
  selected: undefined,
  tokens: 0,
  tokensPerSec: 0,
  status: 'idle',
  error: undefined,
  setParams: (p) => set({ params: { ...get().params, ...p } }),
  select: (index) => set({ selected: index }),
  async send() {
    controller?.abort()
    const mine = new AbortController()
    controller = mine
    set({
      output: '',
      pieces: [],
      selected: undefined,
      tokens: 0,
      tokensPerSec: 0,
      status: 'streaming',
      error: undefined,
    })
    let first = 0
    let last = 0
    try {
      const generated = await streamCompletion(
        get().params,
        (text, provenance) => {
          last = performance.now()
          if (first === 0) first = last
          const tokens = get().tokens + Math.max(1, provenance.length)
          const secs = (last - first) / 1000
          set({
            output: get().output + text,
            pieces: [...get().pieces, { text, tokens: provenance }],
            tokens,
            tokensPerSec: secs > 0 ? (tokens - 1) / secs : 0,
          })
        },
        mine.signal,
      )
      if (controller !== mine) return
      // Text pieces undercount tokens that end mid-character; the server's count is exact.
      const tokens = generated ?? get().tokens
      const secs = (last - first) / 1000
      set({ status: 'done', tokens, tokensPerSec: secs > 0 ? (tokens - 1) / secs : 0 })
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
