import { useChat } from '../store/chat-store.js'

/** The conversations kept in this browser, newest first; opening one shows it where it was. */
export function ConversationList() {
  const { conversations, current, newChat, open, remove, status } = useChat()
  return (
    <nav className="conversations" aria-label="conversations">
      <button type="button" onClick={newChat} className="new-chat">
        New chat
      </button>
      <ul data-testid="conversation-list">
        {conversations.map((c) => (
          <li key={c.id} className={c.id === current.id ? 'current' : ''}>
            <button
              type="button"
              className="open"
              aria-current={c.id === current.id ? 'page' : undefined}
              onClick={() => void open(c.id)}
            >
              {c.title}
            </button>
            <button
              type="button"
              className="remove"
              aria-label={`Delete conversation "${c.title}"`}
              disabled={status === 'streaming' && c.id === current.id}
              onClick={() => void remove(c.id)}
            >
              ×
            </button>
          </li>
        ))}
      </ul>
    </nav>
  )
}
