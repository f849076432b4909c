import { randomInt } from 'node:crypto'
import type { SamplingParams } from '@butterfly/core'
import { ApiError } from '../http/http-errors.js'

// The OpenAI request fields beyond the prompt: token limits, log-probabilities, penalties and
// logit_bias, the seed, and the fields Butterfly refuses rather than silently ignores. openai-request.ts calls
// these; the README's API section lists the same fields.

export type Endpoint = 'chat' | 'completion'

/** What these fields boil down to once validated. */
export interface OpenAiFields {
  readonly maxTokens: number | undefined
  /** Integer, possibly negative (OpenAI allows any int64 we can represent exactly). */
  readonly seed: number | undefined
  /** In [-2, 2]; 0 when absent. */
  readonly frequencyPenalty: number
  readonly presencePenalty: number
  /**
   * Log-probabilities wanted: undefined for none, else how many most likely alternatives to
   * list per token (chat `top_logprobs` 0..20, completions `logprobs` 0..5).
   */
  readonly logprobs: number | undefined
  /** Token id → bias in [-100, 100], applied within the top-k candidates. */
  readonly logitBias: Readonly<Record<number, number>> | undefined
}

export const FIELD_LIMITS = {
  maxTokens: 1_000_000,
  chatTopLogprobs: 20,
  completionLogprobs: 5,
  logitBiasEntries: 1024,
} as const

/** The stable code of a field Butterfly understands but does not serve. */
export const UNSUPPORTED_FIELD = 'unsupported_field'

const invalid = (message: string, param: string) => new ApiError(400, 'invalid_request_error', message, param)
const unsupported = (message: string, param: string) =>
  new ApiError(400, UNSUPPORTED_FIELD, message, param, undefined, 'invalid_request_error')

const absent = (v: unknown) => v === undefined || v === null
const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

export function numberField(
  body: Record<string, unknown>,
  key: string,
  min: number,
  max: number,
  integer = false,
): number | undefined {
  const v = body[key]
  if (absent(v)) return undefined
  if (
    typeof v !== 'number' ||
    !Number.isFinite(v) ||
    (integer && !Number.isInteger(v)) ||
    v < min ||
    v > max
  ) {
    throw invalid(`'${key}' must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`, key)
  }
  return v
}

export function parseOpenAiFields(body: Record<string, unknown>, endpoint: Endpoint): OpenAiFields {
  rejectUnsupported(body, endpoint)
  checkIgnored(body)
  return {
    maxTokens: maxTokens(body),
    seed: numberField(body, 'seed', -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, true),
    frequencyPenalty: numberField(body, 'frequency_penalty', -2, 2) ?? 0,
    presencePenalty: numberField(body, 'presence_penalty', -2, 2) ?? 0,
    logprobs: endpoint === 'chat' ? chatLogprobs(body) : numberField(body, 'logprobs', 0, 5, true),
    logitBias: logitBias(body.logit_bias),
  }
}

/** OpenAI's `{ "<token id>": bias }`; whether the ids exist is checked against the model later. */
function logitBias(v: unknown): Readonly<Record<number, number>> | undefined {
  if (absent(v)) return undefined
  const entries = isRecord(v) ? Object.entries(v) : undefined
  if (
    entries === undefined ||
    entries.length > FIELD_LIMITS.logitBiasEntries ||
    entries.some(([id, b]) => !/^\d{1,9}$/.test(id) || typeof b !== 'number' || !(Math.abs(b) <= 100))
  ) {
    throw invalid(
      `'logit_bias' must map at most ${FIELD_LIMITS.logitBiasEntries} token ids to numbers from -100 to 100`,
      'logit_bias',
    )
  }
  return entries.length === 0
    ? undefined
    : Object.fromEntries(entries.map(([id, b]) => [Number(id), b as number]))
}

/** `max_completion_tokens` is the newer name of `max_tokens`; both may be given only if equal. */
function maxTokens(body: Record<string, unknown>): number | undefined {
  const current = numberField(body, 'max_completion_tokens', 0, FIELD_LIMITS.maxTokens, true)
  const legacy = numberField(body, 'max_tokens', 0, FIELD_LIMITS.maxTokens, true)
  if (current !== undefined && legacy !== undefined && current !== legacy) {
    throw invalid(
      `'max_completion_tokens' (${current}) and 'max_tokens' (${legacy}) disagree; send one of them`,
      'max_completion_tokens',
    )
  }
  return current ?? legacy
}

function chatLogprobs(body: Record<string, unknown>): number | undefined {
  const on = body.logprobs
  if (!absent(on) && typeof on !== 'boolean') throw invalid("'logprobs' must be a boolean", 'logprobs')
  const top = numberField(body, 'top_logprobs', 0, FIELD_LIMITS.chatTopLogprobs, true)
  if (top !== undefined && on !== true) {
    throw invalid("'top_logprobs' needs 'logprobs': true", 'top_logprobs')
  }
  return on === true ? (top ?? 0) : undefined
}

/** Each refused field, and the values of it that ask for nothing and so are accepted. */
const REFUSED: ReadonlyArray<{
  readonly field: string
  readonly endpoints: readonly Endpoint[]
  readonly harmless: (v: unknown) => boolean
  readonly why: string
}> = [
  { field: 'tools', endpoints: ['chat'], harmless: emptyList, why: 'tool calls are not served' },
  {
    field: 'tool_choice',
    endpoints: ['chat'],
    harmless: (v) => v === 'none',
    why: 'tool calls are not served',
  },
  { field: 'functions', endpoints: ['chat'], harmless: emptyList, why: 'function calls are not served' },
  {
    field: 'function_call',
    endpoints: ['chat'],
    harmless: (v) => v === 'none',
    why: 'function calls are not served',
  },
  { field: 'n', endpoints: ['chat', 'completion'], harmless: (v) => v === 1, why: 'only n = 1 is served' },
  {
    field: 'response_format',
    endpoints: ['chat'],
    harmless: (v) => isRecord(v) && v.type === 'text',
    why: "only { type: 'text' } is served (no JSON mode)",
  },
  { field: 'audio', endpoints: ['chat'], harmless: () => false, why: 'audio output is not served' },
  {
    field: 'modalities',
    endpoints: ['chat'],
    harmless: (v) => Array.isArray(v) && v.every((m) => m === 'text'),
    why: "only the 'text' modality is served",
  },
  {
    field: 'prediction',
    endpoints: ['chat'],
    harmless: () => false,
    why: 'predicted outputs are not served',
  },
  {
    field: 'web_search_options',
    endpoints: ['chat'],
    harmless: () => false,
    why: 'web search is not served',
  },
  { field: 'echo', endpoints: ['completion'], harmless: (v) => v === false, why: 'echo is not served' },
  {
    field: 'best_of',
    endpoints: ['completion'],
    harmless: (v) => v === 1,
    why: 'only best_of = 1 is served',
  },
  {
    field: 'suffix',
    endpoints: ['completion'],
    harmless: (v) => v === '',
    why: 'suffix (insertion) is not served',
  },
]

function emptyList(v: unknown): boolean {
  return Array.isArray(v) && v.length === 0
}

/** A refused field with a malformed value is a plain invalid request; a well-formed one is unsupported. */
function rejectUnsupported(body: Record<string, unknown>, endpoint: Endpoint): void {
  if (!absent(body.n)) numberField(body, 'n', 1, 128, true)
  if (!absent(body.best_of)) numberField(body, 'best_of', 1, 20, true)
  const shapes: Array<[string, (v: unknown) => boolean, string]> = [
    ['tools', Array.isArray, 'an array'],
    ['functions', Array.isArray, 'an array'],
    ['response_format', (v) => isRecord(v) && typeof v.type === 'string', "an object with a string 'type'"],
    ['modalities', (v) => Array.isArray(v) && v.every((m) => typeof m === 'string'), 'an array of strings'],
  ]
  for (const [field, ok, what] of shapes) {
    if (!absent(body[field]) && !ok(body[field])) throw invalid(`'${field}' must be ${what}`, field)
  }
  for (const r of REFUSED) {
    const v = body[r.field]
    if (absent(v) || !r.endpoints.includes(endpoint) || r.harmless(v)) continue
    throw unsupported(`'${r.field}' is not supported by this server: ${r.why}`, r.field)
  }
}

/** Fields that change nothing here, accepted when well-formed (as OpenAI would check them). */
function checkIgnored(body: Record<string, unknown>): void {
  if (!absent(body.user) && (typeof body.user !== 'string' || body.user.length > 256)) {
    throw invalid("'user' must be a string of at most 256 characters", 'user')
  }
  if (!absent(body.store) && typeof body.store !== 'boolean')
    throw invalid("'store' must be a boolean", 'store')
  if (!absent(body.parallel_tool_calls) && typeof body.parallel_tool_calls !== 'boolean') {
    throw invalid("'parallel_tool_calls' must be a boolean", 'parallel_tool_calls')
  }
  const meta = body.metadata
  if (absent(meta)) return
  if (
    !isRecord(meta) ||
    Object.keys(meta).length > 16 ||
    Object.entries(meta).some(([k, v]) => k.length > 64 || typeof v !== 'string' || v.length > 512)
  ) {
    throw invalid("'metadata' must map at most 16 keys to strings of at most 512 characters", 'metadata')
  }
}

/**
 * The core sampling parameters of a request. An unseeded request draws a seed; the RNG takes
 * non-negative seeds, so a negative OpenAI seed s becomes 2^53 + s (a seed shared with another
 * only means the two draw alike).
 */
export function samplingParamsOf(
  request: OpenAiFields & { readonly temperature: number; readonly topP: number | undefined },
  vocabSize: number,
): SamplingParams {
  const unknown = Object.keys(request.logitBias ?? {}).find((id) => Number(id) >= vocabSize)
  if (unknown !== undefined) {
    throw invalid(
      `'logit_bias' names token ${unknown}; the model's vocabulary has ${vocabSize}`,
      'logit_bias',
    )
  }
  const seed =
    request.seed === undefined
      ? randomInt(0, 2 ** 31)
      : request.seed < 0
        ? 2 ** 53 + request.seed
        : request.seed
  return {
    temperature: request.temperature,
    seed,
    ...(request.topP === undefined ? {} : { topP: request.topP }),
    ...(request.frequencyPenalty === 0 ? {} : { frequencyPenalty: request.frequencyPenalty }),
    ...(request.presencePenalty === 0 ? {} : { presencePenalty: request.presencePenalty }),
    ...(request.logitBias === undefined ? {} : { logitBias: request.logitBias }),
  }
}
