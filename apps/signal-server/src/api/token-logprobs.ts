import type { Tokenizer, TopKLogits } from '@butterfly/core'

/** One token as OpenAI's log-probabilities show it. */
export interface TokenAlternative {
  readonly token: string
  /** Natural log of the model's probability at temperature 1. */
  readonly logprob: number
  /** The UTF-8 bytes of `token`. */
  readonly bytes: number[]
}

/** A generated token's log-probability, its most likely alternatives, and where its text starts. */
export interface TokenLogprob extends TokenAlternative {
  readonly top: readonly TokenAlternative[]
  /** Characters of the completion's decoded text before this token's. */
  readonly textOffset: number
}

const utf8 = new TextEncoder()

/**
 * The log-probabilities of the token `id` drawn from `topk`, whose logSumExp must have been
 * taken at temperature 1 (generate's `logprobs` option): value − logSumExp is then the model's
 * own log-probability over the whole vocabulary. Float32 rounding in the stage can put the top
 * value a hair above logSumExp, hence the clamp to 0. The drawn token is always a candidate (the
 * sampler draws among them); the alternatives are the `alternatives` best candidates, sorted.
 *
 * A token's text is what it decodes to alone, so a byte-level token holding part of a UTF-8
 * character shows as U+FFFD (the tokenizer has no per-token bytes to offer).
 */
export function tokenLogprob(
  tokenizer: Tokenizer,
  id: number,
  topk: TopKLogits,
  alternatives: number,
  textOffset: number,
): TokenLogprob {
  const { values, ids, logSumExp } = topk
  const at = ids.indexOf(id)
  if (at < 0) throw new Error(`token ${id} is not among the candidates it was drawn from`)
  const entry = (i: number): TokenAlternative => {
    const token = tokenizer.decode([ids[i] as number])
    return {
      token,
      logprob: Math.min(0, (values[i] as number) - logSumExp),
      bytes: Array.from(utf8.encode(token)),
    }
  }
  const top = Array.from({ length: Math.min(alternatives, ids.length) }, (_, i) => entry(i))
  return { ...entry(at), top, textOffset }
}

/** Chat's `choices[].logprobs.content[]` entry. */
export function chatLogprobEntry(t: TokenLogprob): Record<string, unknown> {
  return {
    token: t.token,
    logprob: t.logprob,
    bytes: t.bytes,
    top_logprobs: t.top.map((a) => ({ token: a.token, logprob: a.logprob, bytes: a.bytes })),
  }
}

/** Completions' `choices[].logprobs`. Alternatives that decode alike keep the likelier one. */
export function completionLogprobs(tokens: readonly TokenLogprob[]): Record<string, unknown> {
  return {
    tokens: tokens.map((t) => t.token),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.map((t) => {
      const best = new Map<string, number>()
      for (const a of t.top) if (!best.has(a.token)) best.set(a.token, a.logprob)
      return Object.fromEntries(best) // defines own properties, even for a token named __proto__
    }),
    text_offset: tokens.map((t) => t.textOffset),
  }
}
