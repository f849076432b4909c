import { useEffect } from 'react'
import type { Piece } from '../api/token-pieces.js'
import { useMesh } from '../store/mesh-store.js'

/** For one piece of a reply (the last one by default): each stage's peers and how its vote went. */
export function TokenDetails({ piece, index }: { piece: Piece | undefined; index: number }) {
  const { meshes, refresh } = useMesh()
  useEffect(() => {
    void refresh()
  }, [refresh])
  const token = piece?.tokens[piece.tokens.length - 1]
  if (piece === undefined || token === undefined) return null
  const names = new Map(meshes.flatMap((m) => m.peers.map((p) => [p.id, p.name] as const)))
  const name = (id: string) => names.get(id) ?? `${id.slice(0, 8)}…`
  return (
    <section aria-label="token details" className="token-details" data-testid="token-details">
      <h3>
        Token {index + 1}: {JSON.stringify(piece.text)}
      </h3>
      <ul>
        {token.stages.map((s, i) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: stages are fixed for a generation
          <li key={i}>
            stage {i}:{' '}
            {s === null
              ? 'computed in-process'
              : s.agreeing.length === 0
                ? s.peers.map(name).join(', ')
                : `${s.confirmed === false ? 'unconfirmed' : 'confirmed'} by ${s.agreeing.map(name).join(', ')}` +
                  (s.verification === 'window' ? ' (leader ran ahead, checked in a window)' : ' (voted)') +
                  (s.disagreeing.length > 0 ? `; outvoted ${s.disagreeing.map(name).join(', ')}` : '')}
          </li>
        ))}
      </ul>
      {(token.rolledBack ?? 0) > 0 ? (
        <p data-testid="rolled-back">
          {token.rolledBack} position{token.rolledBack === 1 ? '' : 's'} rolled back before this token (a
          window check caught a wrong answer; nothing rolled back was shown)
        </p>
      ) : null}
    </section>
  )
}
