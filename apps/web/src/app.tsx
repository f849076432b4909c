import { useState } from 'react'
import { ChatView } from './views/chat-view.js'
import { MeshView } from './views/mesh-view.js'

type Tab = 'chat' | 'mesh'

/** The two views, switched by a tab bar that works from the keyboard. */
export function App() {
  const [tab, setTab] = useState<Tab>('chat')
  return (
    <>
      <header>
        <h1>Butterfly</h1>
        <nav aria-label="views">
          {(['chat', 'mesh'] as const).map((t) => (
            <button key={t} type="button" aria-pressed={tab === t} onClick={() => setTab(t)}>
              {t === 'chat' ? 'Chat' : 'Mesh'}
            </button>
          ))}
        </nav>
      </header>
      <main>{tab === 'chat' ? <ChatView /> : <MeshView />}</main>
    </>
  )
}
