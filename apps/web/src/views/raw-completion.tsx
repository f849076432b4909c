import type { FormEvent } from 'react'
import { useRaw } from '../store/raw-store.js'
import { ProvenanceTokens } from './provenance-tokens.js'
import { TokenDetails } from './token-details.js'

/** Raw completion mode: a prompt sent to /v1/completions as is, and the tokens that came back. */
export function RawCompletion() {
  const { prompt, pieces, selected, tokens, tokensPerSec, status, error, setPrompt, send, stop, select } =
    useRaw()
  const streaming = status === 'streaming'
  const submit = (e: FormEvent) => {
    e.preventDefault()
    if (!streaming && prompt.trim() !== '') void send()
  }
  const shown = selected ?? pieces.length - 1
  return (
    <div className="raw">
      <form onSubmit={submit} className="composer">
        <label className="wide">
          Prompt
          <textarea
            name="prompt"
            rows={3}
            value={prompt}
            onChange={(e) => setPrompt(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) submit(e)
            }}
          />
        </label>
        <div className="actions">
          <button type="submit" disabled={streaming || prompt.trim() === ''}>
            Send
          </button>
          <button type="button" onClick={stop} disabled={!streaming}>
            Stop
          </button>
        </div>
      </form>
      <output className="completion" aria-live="polite" data-status={status} data-testid="completion">
        <ProvenanceTokens pieces={pieces} selected={selected} onSelect={select} />
      </output>
      <TokenDetails piece={pieces[shown]} index={shown} />
      <p className="meta" data-testid="chat-status">
        {status === 'streaming' && `streaming… ${tokens} tokens, ${tokensPerSec.toFixed(1)} tokens/s`}
        {status === 'done' && `done: ${tokens} tokens at ${tokensPerSec.toFixed(1)} tokens/s`}
        {status === 'stopped' && `stopped after ${tokens} tokens`}
      </p>
      {error !== undefined && (
        <p role="alert" className="error">
          The mesh could not answer: {error}
        </p>
      )}
    </div>
  )
}
