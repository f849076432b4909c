import { useState } from 'react'
import { useChat } from '../store/chat-store.js'
import type { ChatMessage } from '../store/conversation-db.js'
import { useSettings } from '../store/settings-store.js'
import { MarkdownText } from './markdown-text.js'
import { ProvenanceTokens } from './provenance-tokens.js'
import { TokenDetails } from './token-details.js'

interface Props {
  readonly message: ChatMessage
  readonly index: number
  readonly busy: boolean
}

/** One turn: its text (Markdown, or tokens coloured by verification) and what can be done with it. */
export function MessageItem({ message, index, busy }: Props) {
  const { regenerate, editAndResend, selected, select } = useChat()
  const showProvenance = useSettings((s) => s.showProvenance)
  const [editing, setEditing] = useState<string | undefined>()
  const [copied, setCopied] = useState(false)
  const mine = message.role === 'user'
  const who = mine ? 'You' : 'Assistant'
  const copy = async () => {
    await navigator.clipboard.writeText(message.content)
    setCopied(true)
    setTimeout(() => setCopied(false), 2000)
  }
  const pieces = message.pieces ?? []
  const chosen = selected?.message === message.id ? selected.piece : undefined
  return (
    <li
      className={`message ${message.role}`}
      data-testid={`message-${index}`}
      data-role={message.role}
      data-state={message.state ?? 'done'}
      aria-label={`${who}, turn ${index + 1}`}
    >
      <div className="who">{who}</div>
      {editing !== undefined ? (
        <form
          className="edit"
          onSubmit={(e) => {
            e.preventDefault()
            setEditing(undefined)
            void editAndResend(message.id, editing)
          }}
        >
          <label>
            Edit your message
            <textarea value={editing} rows={3} onChange={(e) => setEditing(e.target.value)} />
          </label>
          <div className="actions">
            <button type="submit" disabled={editing.trim() === ''}>
              Save and resend
            </button>
            <button type="button" onClick={() => setEditing(undefined)}>
              Cancel
            </button>
          </div>
        </form>
      ) : !mine && showProvenance ? (
        <ProvenanceTokens
          pieces={pieces}
          selected={chosen}
          onSelect={(i) => select(message.id, i)}
          testId={`tokens-${index}`}
        />
      ) : (
        <MarkdownText source={message.content} testId={`markdown-${index}`} />
      )}
      {message.state === 'streaming' && <p className="meta">writing…</p>}
      {message.state === 'stopped' && <p className="meta">stopped; the text above is what arrived</p>}
      {message.state === 'error' && (
        <p role="alert" className="error">
          The mesh could not answer: {message.error}
        </p>
      )}
      {!mine && showProvenance && (
        <TokenDetails piece={pieces[chosen ?? pieces.length - 1]} index={chosen ?? pieces.length - 1} />
      )}
      {editing === undefined && message.state !== 'streaming' && (
        <div className="message-actions">
          <button
            type="button"
            onClick={() => void copy()}
            aria-label={`Copy ${who.toLowerCase()} turn ${index + 1}`}
          >
            {copied ? 'Copied' : 'Copy'}
          </button>
          {mine ? (
            <button type="button" disabled={busy} onClick={() => setEditing(message.content)}>
              Edit
            </button>
          ) : (
            <button type="button" disabled={busy} onClick={() => void regenerate(message.id)}>
              Regenerate
            </button>
          )}
        </div>
      )}
    </li>
  )
}
