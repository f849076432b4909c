import { encodeChatPrompt } from '@butterfly/core'
import type { ServedModel } from '../gateway/served-model.js'
import { type ChatMessage, chatPrompt } from './openai-request.js'

/**
 * The prompt ids of a chat: the messages rendered by the model's own chat template
 * (chat_template.jinja or tokenizer_config.json's chat_template) with the generation prompt,
 * then tokenized with one BOS at most (templates that write `bos_token` themselves are not
 * given a second; tokenizer_config.json's `add_bos_token: false` adds none). A model without a template gets the fallback transcript (`chatPrompt`:
 * `<|role|>\n...\n` turns ending in `<|assistant|>\n`) after the tokenizer's BOS. A template
 * that fails to parse or render throws ChatTemplateError (ERR_CHAT_TEMPLATE), answered as 400.
 * `strftime_now` reports the server's current date (UTC), as transformers does.
 */
export function chatPromptIds(
  model: Pick<ServedModel, 'tokenizer' | 'chatTemplate'>,
  messages: readonly ChatMessage[],
  now: Date = new Date(),
  enableThinking?: boolean,
): number[] {
  const template = model.chatTemplate
  if (template === undefined) return model.tokenizer.encode(chatPrompt(messages), { addBos: true })
  const text = template.render(messages, {
    addGenerationPrompt: true,
    date: now,
    ...(enableThinking === undefined ? {} : { enableThinking }),
  })
  return encodeChatPrompt(model.tokenizer, text, { addBos: template.specials.addBosToken !== false })
}

/** A raw completion prompt after the tokenizer's BOS, unless the prompt already starts with it. */
export function rawPromptIds(model: Pick<ServedModel, 'tokenizer'>, prompt: string): number[] {
  return encodeChatPrompt(model.tokenizer, prompt)
}

/** The ids a generation of this model stops on (the tokenizer's EOS when the model lists none). */
export function stopTokenIdsOfModel(model: Pick<ServedModel, 'tokenizer' | 'stopTokenIds'>): number[] {
  if (model.stopTokenIds !== undefined) return [...model.stopTokenIds]
  return model.tokenizer.eosTokenId === undefined ? [] : [model.tokenizer.eosTokenId]
}
