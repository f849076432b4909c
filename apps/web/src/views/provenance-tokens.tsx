import type { Piece, TokenProvenance } from '../api/token-pieces.js'

/** How a token's steps were checked, worst stage first: the colour the provenance view gives it. */
export type Verification = 'outvoted' | 'window' | 'voted' | 'single' | 'local'

export const VERIFICATION_WORDS: Record<Verification, string> = {
  voted: 'confirmed by a vote of replicas',
  window: 'confirmed afterwards in a window check',
  single: 'computed by one peer, not replicated',
  outvoted: 'confirmed, and a peer that disagreed was outvoted',
  local: 'computed in the server process',
}

export function verificationOf(tokens: readonly TokenProvenance[]): Verification {
  const stages = tokens.flatMap((t) => t.stages)
  if (stages.length === 0 || stages.every((s) => s === null)) return 'local'
  if (stages.some((s) => s !== null && s.disagreeing.length > 0)) return 'outvoted'
  if (stages.some((s) => s !== null && s.agreeing.length === 0)) return 'single'
  if (stages.some((s) => s?.verification === 'window')) return 'window'
  return 'voted'
}

interface Props {
  readonly pieces: readonly Piece[]
  readonly selected: number | undefined
  readonly onSelect: (index: number) => void
  readonly testId?: string
}

/**
 * The reply as the tokens arrived, each coloured by how it was verified. The text is exactly
 * the streamed text (no Markdown); each piece is a button that shows who computed it.
 */
export function ProvenanceTokens({ pieces, selected, onSelect, testId }: Props) {
  return (
    <div className="tokens" data-testid={testId}>
      {pieces.map((p, i) => {
        const v = verificationOf(p.tokens)
        return (
          <button
            // biome-ignore lint/suspicious/noArrayIndexKey: pieces only ever grow, in order
            key={i}
            type="button"
            className={`piece v-${v}${selected === i ? ' selected' : ''}`}
            onClick={() => onSelect(i)}
            // The name starts with the text shown, as speech input needs (WCAG 2.5.3).
            aria-label={`${p.text} (token ${i + 1}: ${VERIFICATION_WORDS[v]}; show which peers computed it)`}
          >
            {p.text}
          </button>
        )
      })}
    </div>
  )
}

/** The colours' key, shown above replies while the provenance view is on. */
export function VerificationLegend() {
  return (
    <ul className="legend" aria-label="token colours">
      {(Object.keys(VERIFICATION_WORDS) as Verification[]).map((v) => (
        <li key={v}>
          <span className={`swatch v-${v}`} aria-hidden="true" /> {VERIFICATION_WORDS[v]}
        </li>
      ))}
    </ul>
  )
}
