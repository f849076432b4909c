import { ChatTemplateError } from '../errors.js'
import type { ChatTemplate } from './chat-template.js'

/** Bounds generation_config.json's eos_token_id list. */
const MAX_EOS_IDS = 64

/**
 * The `eos_token_id` of a generation_config.json (an integer or a list of them); [] when it
 * has none. Llama 3 instruct models list `<|end_of_text|>`, `<|eom_id|>` and `<|eot_id|>` here
 * while config.json names one, so a gateway that ignored this file would run past the turn.
 */
export function generationConfigEosIds(json: unknown, where = 'generation_config.json'): number[] {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ChatTemplateError(`${where} must be a JSON object`)
  }
  const entry = (json as Record<string, unknown>).eos_token_id
  if (entry === undefined || entry === null) return []
  const list = Array.isArray(entry) ? entry : [entry]
  if (list.length > MAX_EOS_IDS)
    throw new ChatTemplateError(`${where} lists more than ${MAX_EOS_IDS} eos_token_id`)
  for (const id of list) {
    if (!Number.isSafeInteger(id) || (id as number) < 0) {
      throw new ChatTemplateError(`${where} eos_token_id must be a non-negative integer or a list of them`)
    }
  }
  return list as number[]
}

/**
 * Every id a chat generation stops on, deduplicated and in range: the tokenizer's EOS,
 * config.json's eos ids, generation_config.json's eos ids, and the chat template's
 * end-of-turn tokens that the vocabulary has. Ids outside the vocabulary are dropped (a
 * config may name ids of a larger checkpoint's vocabulary).
 */
export function stopTokenIdsOf(sources: {
  readonly tokenizer: {
    readonly vocabSize: number
    readonly eosTokenId: number | undefined
    tokenId?(token: string): number | undefined
  }
  readonly configEosIds?: readonly number[]
  readonly generationEosIds?: readonly number[]
  readonly template?: ChatTemplate | undefined
}): number[] {
  const { tokenizer } = sources
  const ids: number[] = []
  if (tokenizer.eosTokenId !== undefined) ids.push(tokenizer.eosTokenId)
  ids.push(...(sources.configEosIds ?? []), ...(sources.generationEosIds ?? []))
  for (const token of sources.template?.endOfTurnTokens() ?? []) {
    const id = tokenizer.tokenId?.(token)
    if (id !== undefined) ids.push(id)
  }
  return [...new Set(ids)].filter((id) => Number.isInteger(id) && id >= 0 && id < tokenizer.vocabSize)
}
