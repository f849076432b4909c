import { type DBSchema, type IDBPDatabase, openDB } from 'idb'
import type { Piece } from '../api/token-pieces.js'

export type MessageState = 'streaming' | 'done' | 'stopped' | 'error'

export interface ChatMessage {
  readonly id: string
  readonly role: 'user' | 'assistant'
  readonly content: string
  /** An assistant reply's text as it streamed, with the tokens (and their provenance) behind each piece. */
  readonly pieces?: readonly Piece[]
  readonly state?: MessageState
  /** Why the reply ended early, in plain words. */
  readonly error?: string
  readonly tokens?: number
}

export interface Conversation {
  readonly id: string
  readonly title: string
  readonly system: string
  readonly messages: readonly ChatMessage[]
  readonly updatedAt: number
}

interface ChatDb extends DBSchema {
  conversations: { key: string; value: Conversation; indexes: { updatedAt: number } }
}

// Conversations live in this browser only (IndexedDB), never on the server.
let db: Promise<IDBPDatabase<ChatDb>> | undefined

function open(): Promise<IDBPDatabase<ChatDb>> {
  db ??= openDB<ChatDb>('butterfly-chat', 1, {
    upgrade(d) {
      d.createObjectStore('conversations', { keyPath: 'id' }).createIndex('updatedAt', 'updatedAt')
    },
  })
  return db
}

/** Every saved conversation, most recently changed first. */
export async function listConversations(): Promise<Conversation[]> {
  const all = await (await open()).getAllFromIndex('conversations', 'updatedAt')
  return all.reverse()
}

export async function saveConversation(c: Conversation): Promise<void> {
  await (await open()).put('conversations', c)
}

export async function deleteConversation(id: string): Promise<void> {
  await (await open()).delete('conversations', id)
}

/** A conversation's title: the start of its first user message. */
export function titleOf(messages: readonly ChatMessage[]): string {
  const first = messages.find((m) => m.role === 'user')?.content.trim() ?? ''
  if (first === '') return 'New chat'
  const line = first.split('\n')[0] ?? first
  return line.length > 48 ? `${line.slice(0, 47)}…` : line
}

export function newId(): string {
  return crypto.randomUUID()
}
