import type { FormEvent } from 'react'
import { useChat } from '../store/chat-store.js'
import { TokenDetails } from './token-details.js'

/** A prompt, the sampling settings, and the completion as it streams in. */
export function ChatView() {
  const { params, pieces, selected, tokens, tokensPerSec, status, error, setParams, send, stop, select } =
    useChat()
  const streaming = status === 'streaming'
  const submit = (e: FormEvent) => {
    e.preventDefault()
    if (!streaming && params.prompt.trim() !== '') void send()
  }
  const number = (v: string, fallback: number) =>
    Number.isFinite(Number(v)) && v !== '' ? Number(v) : fallback
  return (
    <section aria-labelledby="chat-title" className="view">
      <h2 id="chat-title">Chat</h2>
      <form onSubmit={submit} className="chat-form">
        <label className="wide">
          Prompt
          <textarea
            name="prompt"
            rows={3}
            value={params.prompt}
            onChange={(e) => setParams({ prompt: e.target.value })}
            onKeyDown={(e) => {
              if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) submit(e)
            }}
          />
        </label>
        <label>
          Max tokens
          <input
            name="max-tokens"
            type="number"
            min={1}
            max={4096}
            value={params.maxTokens}
            onChange={(e) => setParams({ maxTokens: number(e.target.value, 64) })}
          />
        </label>
        <label>
          Temperature
          <input
            name="temperature"
            type="number"
            min={0}
            max={2}
            step={0.1}
            value={params.temperature}
            onChange={(e) => setParams({ temperature: number(e.target.value, 0) })}
          />
        </label>
        <label>
          Top-p
          <input
            name="top-p"
            type="number"
            min={0.01}
            max={1}
            step={0.01}
            value={params.topP}
            onChange={(e) => setParams({ topP: number(e.target.value, 1) })}
          />
        </label>
        <label>
          Seed
          <input
            name="seed"
            type="number"
            min={0}
            value={params.seed}
            onChange={(e) => setParams({ seed: number(e.target.value, 0) })}
          />
        </label>
        <div className="actions">
          <button type="submit" disabled={streaming || params.prompt.trim() === ''}>
            Send
          </button>
          <button type="button" onClick={stop} disabled={!streaming}>
            Stop
          </button>
        </div>
      </form>
      <output className="completion" aria-live="polite" data-status={status} data-testid="completion">
        {pieces.map((p, i) => (
          <button
            // biome-ignore lint/suspicious/noArrayIndexKey: pieces only ever grow, in order
            key={i}
            type="button"
            className={`piece${selected === i ? ' selected' : ''}`}
            onClick={() => select(i)}
            aria-label={`token ${i + 1}: show which peers computed it`}
          >
            {p.text}
          </button>
        ))}
      </output>
      <TokenDetails />
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
    </section>
  )
}
