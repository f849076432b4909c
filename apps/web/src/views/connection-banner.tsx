import { useEffect } from 'react'
import { useConnection } from '../store/connection-store.js'

/** Checks the server every 3 s and says, in words, when it is lost and when it is back. */
export function ConnectionBanner() {
  const { state, awayMs, check } = useConnection()
  useEffect(() => {
    void check()
    const timer = setInterval(() => void check(), 3000)
    return () => clearInterval(timer)
  }, [check])
  return (
    <div className={`connection ${state}`} role="status" data-testid="connection" data-state={state}>
      {state === 'lost' &&
        'The server cannot be reached. Retrying every few seconds; chats and contributions resume when it is back.'}
      {state === 'back' &&
        `Reconnected to the server (it was unreachable for ${Math.max(1, Math.round((awayMs ?? 0) / 1000))} s). A reply that was streaming then can be regenerated.`}
    </div>
  )
}
