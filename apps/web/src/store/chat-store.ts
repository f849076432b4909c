import { create } from 'zustand'
import { type ChatTurn, streamChat } from '../api/stream-chat.js'
import {
  type ChatMessage,
  type Conversation,
  deleteConversation,
  listConversations,
  newId,
  saveConversation,
  titleOf,
} from './conversation-db.js'
import { resolveModel } from './model-store.js'
import { useSettings } from './settings-store.js'

export type ChatStatus = 'idle' | 'streaming' | 'done' | 'stopped' | 'error'

export interface ConversationSummary {
  readonly id: string
  readonly title: string
  readonly updatedAt: number
}

export interface ChatState {
  readonly conversations: readonly ConversationSummary[]
  readonly current: Conversation
  readonly draft: string
  readonly status: ChatStatus
  readonly error: string | undefined
  /** Saving or reading conversations failed (private windows may refuse IndexedDB). */
  readonly storageError: string | undefined
  readonly tokens: number
  readonly tokensPerSec: number
  /** The piece of a reply whose provenance is shown. */
  readonly selected: { readonly message: string; readonly piece: number } | undefined
  load(): Promise<void>
  newChat(): void
  open(id: string): Promise<void>
  remove(id: string): Promise<void>
  setSystem(text: string): void
  setDraft(text: string): void
  send(): Promise<void>
  regenerate(messageId: string): Promise<void>
  editAndResend(messageId: string, text: string): Promise<void>
  stop(): void
  select(message: string, piece: number): void
}

const CURRENT_KEY = 'butterfly-current-chat'
const blank = (): Conversation => ({ id: newId(), title: 'New chat', system: '', messages: [], updatedAt: 0 })
const summary = (c: Conversation): ConversationSummary => ({
  id: c.id,
  title: c.title,
  updatedAt: c.updatedAt,
})
const plain = (err: unknown) => (err as Error).message || String(err)

let controller: AbortController | undefined

/** The chat: the open conversation, the saved ones, and the reply streaming in. */
export const useChat = create<ChatState>((set, get) => {
  async function save(c: Conversation): Promise<void> {
    try {
      await saveConversation(c)
      const others = get().conversations.filter((s) => s.id !== c.id)
      set({ conversations: [summary(c), ...others], storageError: undefined })
    } catch (err) {
      set({ storageError: `this conversation could not be saved in the browser: ${plain(err)}` })
    }
  }

  /** Streams a reply to `history` (which ends with a user turn) into the open conversation. */
  async function run(history: readonly ChatMessage[]): Promise<void> {
    controller?.abort()
    const mine = new AbortController()
    controller = mine
    const reply: ChatMessage = { id: newId(), role: 'assistant', content: '', pieces: [], state: 'streaming' }
    let conv: Conversation = {
      ...get().current,
      title: titleOf(history),
      messages: [...history, reply],
      updatedAt: Date.now(),
    }
    const patch = (m: Partial<ChatMessage>) => {
      conv = { ...conv, messages: conv.messages.map((x) => (x.id === reply.id ? { ...x, ...m } : x)) }
      if (get().current.id === conv.id) set({ current: conv })
    }
    localStorage.setItem(CURRENT_KEY, conv.id)
    set({
      current: conv,
      status: 'streaming',
      error: undefined,
      tokens: 0,
      tokensPerSec: 0,
      selected: undefined,
    })
    await save(conv)
    const turns: ChatTurn[] = [
      ...(conv.system.trim() === '' ? [] : [{ role: 'system' as const, content: conv.system }]),
      ...history.map((m) => ({ role: m.role, content: m.content })),
    ]
    const { sampling, model } = useSettings.getState()
    let text = ''
    let pieces: NonNullable<ChatMessage['pieces']> = []
    let count = 0
    let first = 0
    const rate = () => (count > 1 ? (count - 1) / ((performance.now() - first) / 1000) : 0)
    try {
      const result = await streamChat(
        await resolveModel(model),
        turns,
        sampling,
        (piece) => {
          if (first === 0) first = performance.now()
          text += piece.text
          pieces = [...pieces, piece]
          count += Math.max(1, piece.tokens.length)
          patch({ content: text, pieces })
          if (controller === mine) set({ tokens: count, tokensPerSec: rate() })
        },
        mine.signal,
      )
      // Text pieces undercount tokens that end mid-character; the server's count is exact.
      patch({ state: 'done', tokens: result.completionTokens ?? count })
      if (controller === mine) set({ status: 'done', tokens: result.completionTokens ?? count })
    } catch (err) {
      if (mine.signal.aborted) {
        patch({ state: 'stopped', tokens: count })
        if (controller === mine) set({ status: 'stopped' })
      } else {
        patch({ state: 'error', error: plain(err), tokens: count })
        if (controller === mine) set({ status: 'error', error: plain(err) })
      }
    } finally {
      await save(conv)
    }
  }

  return {
    conversations: [],
    current: blank(),
    draft: '',
    status: 'idle',
    error: undefined,
    storageError: undefined,
    tokens: 0,
    tokensPerSec: 0,
    selected: undefined,
    async load() {
      try {
        const all = await listConversations()
        const wanted = localStorage.getItem(CURRENT_KEY)
        const current = all.find((c) => c.id === wanted) ?? all[0]
        set({
          conversations: all.map(summary),
          ...(current && get().current.updatedAt === 0 ? { current } : {}),
        })
      } catch (err) {
        set({ storageError: `saved conversations could not be read: ${plain(err)}` })
      }
    },
    newChat() {
      controller?.abort()
      controller = undefined
      localStorage.removeItem(CURRENT_KEY)
      set({ current: blank(), draft: '', status: 'idle', error: undefined, selected: undefined })
    },
    async open(id) {
      if (id === get().current.id) return
      controller?.abort()
      controller = undefined
      const found = (await listConversations().catch(() => [])).find((c) => c.id === id)
      if (found === undefined) return
      localStorage.setItem(CURRENT_KEY, id)
      set({ current: found, status: 'idle', error: undefined, selected: undefined })
    },
    async remove(id) {
      if (id === get().current.id) get().newChat()
      await deleteConversation(id).catch((err: unknown) => set({ storageError: plain(err) }))
      set({ conversations: get().conversations.filter((c) => c.id !== id) })
    },
    setSystem(text) {
      set({ current: { ...get().current, system: text } })
    },
    setDraft: (draft) => set({ draft }),
    async send() {
      const text = get().draft
      if (text.trim() === '' || get().status === 'streaming') return
      set({ draft: '' })
      await run([...get().current.messages, { id: newId(), role: 'user', content: text }])
    },
    async regenerate(messageId) {
      const messages = get().current.messages
      const at = messages.findIndex((m) => m.id === messageId && m.role === 'assistant')
      if (at <= 0) return
      await run(messages.slice(0, at))
    },
    async editAndResend(messageId, text) {
      const messages = get().current.messages
      const at = messages.findIndex((m) => m.id === messageId && m.role === 'user')
      if (at < 0 || text.trim() === '') return
      await run([...messages.slice(0, at), { ...(messages[at] as ChatMessage), content: text }])
    },
    stop() {
      controller?.abort()
    },
    select: (message, piece) => set({ selected: { message, piece } }),
  }
})
