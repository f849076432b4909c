import { type FormEvent, useEffect } from 'react'
import { useChat } from '../store/chat-store.js'
import { useSettings } from '../store/settings-store.js'
import { AdvancedSettings } from './advanced-settings.js'
import { ConversationList } from './conversation-list.js'
import { MessageItem } from './message-item.js'
import { ModelPicker } from './model-picker.js'
import { VerificationLegend } from './provenance-tokens.js'
import { RawCompletion } from './raw-completion.js'

/** A conversation with the mesh: turns, a system prompt, saved chats, and the advanced settings. */
export function ChatView() {
  const chat = useChat()
  const { rawMode, showProvenance, setShowProvenance } = useSettings()
  const { load } = chat
  useEffect(() => {
    void load()
  }, [load])
  const streaming = chat.status === 'streaming'
  const submit = (e: FormEvent) => {
    e.preventDefault()
    void chat.send()
  }
  return (
    <section aria-labelledby="chat-title" className="view chat">
      <h2 id="chat-title">Chat</h2>
      <div className="chat-layout">
        <ConversationList />
        <div className="chat-main">
          <ModelPicker />
          <label className="toggle">
            <input
              type="checkbox"
              checked={showProvenance}
              onChange={(e) => setShowProvenance(e.target.checked)}
            />
            Show who computed each token
          </label>
          {showProvenance && <VerificationLegend />}
          {rawMode ? (
            <RawCompletion />
          ) : (
            <>
              <label className="system">
                System prompt (optional)
                <textarea
                  name="system"
                  rows={2}
                  value={chat.current.system}
                  disabled={streaming}
                  onChange={(e) => chat.setSystem(e.target.value)}
                />
              </label>
              <ol className="messages" aria-label="messages" data-testid="messages">
                {chat.current.messages.map((m, i) => (
                  <MessageItem key={m.id} message={m} index={i} busy={streaming} />
                ))}
              </ol>
              <form onSubmit={submit} className="composer">
                <label className="wide">
                  Message
                  <textarea
                    name="message"
                    rows={3}
                    value={chat.draft}
                    onChange={(e) => chat.setDraft(e.target.value)}
                    onKeyDown={(e) => {
                      // Not while an input method is composing: its Enter picks a candidate.
                      if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) submit(e)
                    }}
                  />
                </label>
                <div className="actions">
                  <button type="submit" disabled={streaming || chat.draft.trim() === ''}>
                    Send
                  </button>
                  <button type="button" onClick={chat.stop} disabled={!streaming}>
                    Stop
                  </button>
                </div>
              </form>
              <p className="meta" data-testid="chat-status" aria-live="polite">
                {chat.status === 'streaming' &&
                  `streaming… ${chat.tokens} tokens, ${chat.tokensPerSec.toFixed(1)} tokens/s`}
                {chat.status === 'done' &&
                  `done: ${chat.tokens} tokens at ${chat.tokensPerSec.toFixed(1)} tokens/s`}
                {chat.status === 'stopped' && `stopped after ${chat.tokens} tokens`}
              </p>
              {chat.storageError !== undefined && (
                <p role="alert" className="error">
                  {chat.storageError}
                </p>
              )}
            </>
          )}
          <AdvancedSettings />
        </div>
      </div>
    </section>
  )
}
