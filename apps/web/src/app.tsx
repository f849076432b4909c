import { useState } from 'react'
import { ChatView } from './views/chat-view.js'
import { ConnectionBanner } from './views/connection-banner.js'
import { ContributeView } from './views/contribute-view.js'
import { MeshView } from './views/mesh-view.js'

type Tab = 'chat' | 'mesh' | 'contribute'

/** The three views, switched by a tab bar that works from the keyboard. */
export function App() {
  const [tab, setTab] = useState<Tab>('chat')
  return (
    <>
      <header>
        <h1>Butterfly</h1>
        <nav aria-label="views">
          {(['chat', 'mesh', 'contribute'] as const).map((t) => (
            <button key={t} type="button" aria-pressed={tab === t} onClick={() => setTab(t)}>
              {t === 'chat' ? 'Chat' : t === 'mesh' ? 'Mesh' : 'Contribute'}
            </button>
          ))}
        </nav>
      </header>
      <ConnectionBanner />
      {/* Every view stays mounted: contributing goes on while the user chats or looks at the mesh. */}
      <main>
        <div hidden={tab !== 'chat'}>
          <ChatView />
        </div>
        <div hidden={tab !== 'mesh'}>{tab === 'mesh' && <MeshView />}</div>
        <div hidden={tab !== 'contribute'}>
          <ContributeView />
        </div>
      </main>
    </>
  )
}
