import { ApiError } from '../http/http-errors.js'
import {
  type Endpoint,
  FIELD_LIMITS,
  numberField,
  type OpenAiFields,
  parseOpenAiFields,
} from './openai-fields.js'

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant'
  readonly content: string
}

/** What both endpoints boil down to once validated. */
export interface CompletionRequest extends OpenAiFields {
  readonly model: string
  /** Chat messages, or a raw prompt (completions). */
  readonly messages?: readonly ChatMessage[]
  /** `chat_template_kwargs.enable_thinking` (vLLM's spelling): Qwen3's thinking switch. */
  readonly enableThinking?: boolean
  readonly prompt?: string
  readonly temperature: number
  readonly topP: number | undefined
  readonly stop: readonly string[]
  readonly stream: boolean
  readonly includeUsage: boolean
}

export const REQUEST_LIMITS = {
  messages: 256,
  contentChars: 200_000,
  maxTokens: FIELD_LIMITS.maxTokens,
  stopSequences: 4,
  stopChars: 256,
} as const

const invalid = (message: string, param: string) => new ApiError(400, 'invalid_request_error', message, param)

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function parseStop(v: unknown): string[] {
  if (v === undefined || v === null) return []
  const list = typeof v === 'string' ? [v] : v
  if (!Array.isArray(list) || list.length > REQUEST_LIMITS.stopSequences) {
    throw invalid(`'stop' must be a string or up to ${REQUEST_LIMITS.stopSequences} strings`, 'stop')
  }
  return list.map((s) => {
    if (typeof s !== 'string' || s.length === 0 || s.length > REQUEST_LIMITS.stopChars) {
      throw invalid(
        `each 'stop' sequence must be a non-empty string of at most ${REQUEST_LIMITS.stopChars} characters`,
        'stop',
      )
    }
    return s
  })
}

function common(
  body: Record<string, unknown>,
  endpoint: Endpoint,
): Omit<CompletionRequest, 'messages' | 'prompt'> {
  if (typeof body.model !== 'string' || body.model.length === 0 || body.model.length > 256) {
    throw invalid("'model' is required and must be a string", 'model')
  }
  if (body.stream !== undefined && typeof body.stream !== 'boolean')
    throw invalid("'stream' must be a boolean", 'stream')
  const so = body.stream_options
  if (so !== undefined && so !== null && !isRecord(so))
    throw invalid("'stream_options' must be an object", 'stream_options')
  if (isRecord(so) && so.include_usage !== undefined && typeof so.include_usage !== 'boolean')
    throw invalid("'stream_options.include_usage' must be a boolean", 'stream_options.include_usage')
  return {
    ...parseOpenAiFields(body, endpoint),
    model: body.model,
    temperature: numberField(body, 'temperature', 0, 2) ?? 1,
    topP: numberField(body, 'top_p', Number.MIN_VALUE, 1),
    stop: parseStop(body.stop),
    stream: body.stream === true,
    includeUsage: isRecord(so) && so.include_usage === true,
  }
}

export function parseChatRequest(body: unknown): CompletionRequest {
  if (!isRecord(body)) throw invalid('the request body must be a JSON object', 'body')
  const base = common(body, 'chat')
  const messages = body.messages
  if (!Array.isArray(messages) || messages.length === 0 || messages.length > REQUEST_LIMITS.messages) {
    throw invalid(`'messages' must be an array of 1 to ${REQUEST_LIMITS.messages} messages`, 'messages')
  }
  let chars = 0
  const parsed = messages.map((m, i): ChatMessage => {
    if (!isRecord(m)) throw invalid(`messages[${i}] must be an object`, `messages[${i}]`)
    if (m.role !== 'system' && m.role !== 'user' && m.role !== 'assistant' && m.role !== 'developer') {
      throw invalid(`messages[${i}].role must be system, developer, user or assistant`, `messages[${i}].role`)
    }
    const content = messageText(m.content, i)
    chars += content.length
    return { role: m.role === 'developer' ? 'system' : m.role, content }
  })
  if (chars > REQUEST_LIMITS.contentChars) {
    throw invalid(`messages exceed ${REQUEST_LIMITS.contentChars} characters`, 'messages')
  }
  const kwargs = body.chat_template_kwargs
  if (kwargs === undefined || kwargs === null) return { ...base, messages: parsed }
  // Only the switch templates are known to read; anything else would silently do nothing.
  if (!isRecord(kwargs)) throw invalid("'chat_template_kwargs' must be an object", 'chat_template_kwargs')
  for (const key of Object.keys(kwargs)) {
    if (key !== 'enable_thinking') {
      throw invalid(
        `'chat_template_kwargs.${key}' is not supported (only enable_thinking)`,
        `chat_template_kwargs.${key}`,
      )
    }
  }
  const thinking = kwargs.enable_thinking
  if (thinking === undefined) return { ...base, messages: parsed }
  if (typeof thinking !== 'boolean') {
    throw invalid(
      "'chat_template_kwargs.enable_thinking' must be a boolean",
      'chat_template_kwargs.enable_thinking',
    )
  }
  return { ...base, messages: parsed, enableThinking: thinking }
}

export function parseCompletionRequest(body: unknown): CompletionRequest {
  if (!isRecord(body)) throw invalid('the request body must be a JSON object', 'body')
  const base = common(body, 'completion')
  const prompt = body.prompt
  if (typeof prompt !== 'string') throw invalid("'prompt' must be a string", 'prompt')
  if (prompt.length > REQUEST_LIMITS.contentChars) {
    throw invalid(`'prompt' exceeds ${REQUEST_LIMITS.contentChars} characters`, 'prompt')
  }
  return { ...base, prompt }
}

/** Text content, either a string or an array of `{ type: 'text', text }` parts. */
function messageText(content: unknown, i: number): string {
  if (typeof content === 'string') return content
  if (Array.isArray(content)) {
    return content
      .map((part, j) => {
        if (!isRecord(part) || part.type !== 'text' || typeof part.text !== 'string') {
          throw invalid(`messages[${i}].content[${j}] must be a text part`, `messages[${i}].content`)
        }
        return part.text
      })
      .join('')
  }
  throw invalid(`messages[${i}].content must be a string`, `messages[${i}].content`)
}

/**
 * The fallback chat format, for models without a chat template: a plain role-tagged
 * transcript ending with the assistant's turn. Models with a template (chat_template.jinja or
 * tokenizer_config.json's chat_template) get theirs instead; see chat-prompt.ts.
 */
export function chatPrompt(messages: readonly ChatMessage[]): string {
  return `${messages.map((m) => `<|${m.role}|>\n${m.content}\n`).join('')}<|assistant|>\n`
}
