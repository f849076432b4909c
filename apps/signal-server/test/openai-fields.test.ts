import { nodeWrtc } from '@butterfly/node-platform'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { attachGateway } from '../src/api/attach-gateway.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer, tinyModel } from './helpers.js'

// Every request field, malformed or refused, fed to the real HTTP server. The mesh has no
// worker: a body that passes validation gets as far as the gateway and answers 503 no_plan,
// which is how the accepted table proves a field was accepted rather than refused.
let server: SignalServer
let cleanup: () => Promise<void>

beforeAll(async () => {
  const model = await tinyModel()
  cleanup = model.cleanup
  server = await startServer({
    meshes: [{ name: 'default', modelDir: model.dir }],
    extend: (parts) => attachGateway(parts, { planWaitMs: 0 }, { wrtc: nodeWrtc() }).then(() => undefined),
  })
})

afterAll(async () => {
  await server?.close()
  await cleanup?.()
})

type Endpoint = 'chat' | 'completion'
const base: Record<Endpoint, Record<string, unknown>> = {
  chat: { model: 'default', messages: [{ role: 'user', content: 'hi' }] },
  completion: { model: 'default', prompt: 'hi' },
}

async function post(endpoint: Endpoint, extra: Record<string, unknown>) {
  const res = await fetch(`${server.url}/v1/${endpoint === 'chat' ? 'chat/completions' : 'completions'}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...base[endpoint], ...extra }),
  })
  return {
    status: res.status,
    body: (await res.json()) as {
      error: { message: string; type: string; param: string | null; code: string }
    },
  }
}

const BOTH: Endpoint[] = ['chat', 'completion']
const INVALID = 'invalid_request_error'
const UNSUPPORTED = 'unsupported_field'

// [endpoints, fields, param, code]
const refused: Array<[Endpoint[], Record<string, unknown>, string, string]> = [
  // malformed types and ranges
  [BOTH, { max_tokens: -1 }, 'max_tokens', INVALID],
  [BOTH, { max_tokens: 2.5 }, 'max_tokens', INVALID],
  [['chat'], { max_completion_tokens: '4' }, 'max_completion_tokens', INVALID],
  [['chat'], { max_completion_tokens: 1e12 }, 'max_completion_tokens', INVALID],
  [['chat'], { max_completion_tokens: 4, max_tokens: 5 }, 'max_completion_tokens', INVALID],
  [BOTH, { temperature: 2.5 }, 'temperature', INVALID],
  [BOTH, { top_p: 0 }, 'top_p', INVALID],
  [BOTH, { frequency_penalty: 2.01 }, 'frequency_penalty', INVALID],
  [BOTH, { frequency_penalty: '1' }, 'frequency_penalty', INVALID],
  [BOTH, { presence_penalty: -3 }, 'presence_penalty', INVALID],
  [BOTH, { presence_penalty: true }, 'presence_penalty', INVALID],
  [BOTH, { seed: 1.5 }, 'seed', INVALID],
  [BOTH, { seed: '42' }, 'seed', INVALID],
  [BOTH, { seed: 2 ** 60 }, 'seed', INVALID],
  [['chat'], { logprobs: 1 }, 'logprobs', INVALID],
  [['chat'], { logprobs: 'yes' }, 'logprobs', INVALID],
  [['chat'], { logprobs: true, top_logprobs: 21 }, 'top_logprobs', INVALID],
  [['chat'], { logprobs: true, top_logprobs: -1 }, 'top_logprobs', INVALID],
  [['chat'], { logprobs: true, top_logprobs: 1.5 }, 'top_logprobs', INVALID],
  [['chat'], { top_logprobs: 3 }, 'top_logprobs', INVALID],
  [['chat'], { logprobs: false, top_logprobs: 3 }, 'top_logprobs', INVALID],
  [['completion'], { logprobs: 6 }, 'logprobs', INVALID],
  [['completion'], { logprobs: true }, 'logprobs', INVALID],
  [['completion'], { logprobs: -1 }, 'logprobs', INVALID],
  [BOTH, { stream: 'yes' }, 'stream', INVALID],
  [BOTH, { stream: true, stream_options: 'usage' }, 'stream_options', INVALID],
  [BOTH, { stream: true, stream_options: { include_usage: 1 } }, 'stream_options.include_usage', INVALID],
  [BOTH, { n: 0 }, 'n', INVALID],
  [BOTH, { n: 1.5 }, 'n', INVALID],
  [BOTH, { user: 42 }, 'user', INVALID],
  [BOTH, { store: 'no' }, 'store', INVALID],
  [BOTH, { metadata: { a: 1 } }, 'metadata', INVALID],
  [BOTH, { metadata: [] }, 'metadata', INVALID],
  [['chat'], { tools: { type: 'function' } }, 'tools', INVALID],
  [['chat'], { response_format: 'json' }, 'response_format', INVALID],
  [BOTH, { logit_bias: [1, 2] }, 'logit_bias', INVALID],
  [BOTH, { logit_bias: { a: 1 } }, 'logit_bias', INVALID],
  [BOTH, { logit_bias: { '-1': 1 } }, 'logit_bias', INVALID],
  [BOTH, { logit_bias: { '5': 101 } }, 'logit_bias', INVALID],
  [BOTH, { logit_bias: { '5': '1' } }, 'logit_bias', INVALID],
  [BOTH, { logit_bias: { '999999999': 1 } }, 'logit_bias', INVALID], // beyond the vocabulary
  [['chat'], { modalities: 'text' }, 'modalities', INVALID],
  // well-formed but not served
  [['chat'], { tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools', UNSUPPORTED],
  [['chat'], { tool_choice: 'auto' }, 'tool_choice', UNSUPPORTED],
  [['chat'], { tool_choice: { type: 'function', function: { name: 'f' } } }, 'tool_choice', UNSUPPORTED],
  [['chat'], { functions: [{ name: 'f' }] }, 'functions', UNSUPPORTED],
  [['chat'], { function_call: 'auto' }, 'function_call', UNSUPPORTED],
  [BOTH, { n: 2 }, 'n', UNSUPPORTED],
  [['chat'], { response_format: { type: 'json_object' } }, 'response_format', UNSUPPORTED],
  [['chat'], { response_format: { type: 'json_schema', json_schema: {} } }, 'response_format', UNSUPPORTED],
  [['chat'], { audio: { voice: 'alloy', format: 'wav' } }, 'audio', UNSUPPORTED],
  [['chat'], { modalities: ['text', 'audio'] }, 'modalities', UNSUPPORTED],
  [['chat'], { prediction: { type: 'content', content: 'x' } }, 'prediction', UNSUPPORTED],
  [['chat'], { web_search_options: {} }, 'web_search_options', UNSUPPORTED],
  [['completion'], { echo: true }, 'echo', UNSUPPORTED],
  [['completion'], { best_of: 3 }, 'best_of', UNSUPPORTED],
  [['completion'], { suffix: 'end' }, 'suffix', UNSUPPORTED],
]

const refusedCases = refused.flatMap(([endpoints, fields, param, code]) =>
  endpoints.map((e) => [e, JSON.stringify(fields), fields, param, code] as const),
)

describe('refused request fields', () => {
  test.each(refusedCases)('%s %s → 400 naming %s', async (endpoint, _, fields, param, code) => {
    const { status, body } = await post(endpoint, fields)
    expect(status).toBe(400)
    expect(body.error.type).toBe('invalid_request_error')
    expect(body.error.param).toBe(param)
    expect(body.error.code).toBe(code)
    expect(body.error.message).toContain(param.split('.')[0])
  })

  test('the disagreeing token limits are both named', async () => {
    const { body } = await post('chat', { max_completion_tokens: 4, max_tokens: 5 })
    expect(body.error.message).toMatch(/max_completion_tokens.*max_tokens/)
  })
})

// Harmless or served values: validation passes and the request reaches the (empty) mesh.
const accepted: Array<[Endpoint[], Record<string, unknown>]> = [
  [['chat'], { max_completion_tokens: 4 }],
  [['chat'], { max_completion_tokens: 4, max_tokens: 4 }],
  [BOTH, { max_tokens: 4, temperature: 0, top_p: 1 }],
  [BOTH, { frequency_penalty: -2, presence_penalty: 2 }],
  [BOTH, { seed: -7 }],
  [BOTH, { seed: Number.MAX_SAFE_INTEGER }],
  [['chat'], { logprobs: true }],
  [['chat'], { logprobs: true, top_logprobs: 20 }],
  [['chat'], { logprobs: false }],
  [['chat'], { logprobs: null, top_logprobs: null }],
  [['completion'], { logprobs: 0 }],
  [['completion'], { logprobs: 5 }],
  [BOTH, { stream: true, stream_options: { include_usage: true } }],
  [BOTH, { n: 1, user: 'u-1', store: false, metadata: { team: 'a' } }],
  [BOTH, { logit_bias: {} }],
  [BOTH, { logit_bias: { '5': 10, '7': -100 } }],
  [['chat'], { tools: [], tool_choice: 'none', functions: [], function_call: 'none' }],
  [['chat'], { response_format: { type: 'text' }, modalities: ['text'], parallel_tool_calls: false }],
  [['completion'], { echo: false, best_of: 1, suffix: '' }],
]

const acceptedCases = accepted.flatMap(([endpoints, fields]) =>
  endpoints.map((e) => [e, JSON.stringify(fields), fields] as const),
)

describe('accepted request fields', () => {
  test.each(acceptedCases)('%s %s passes validation', async (endpoint, _, fields) => {
    const { status, body } = await post(endpoint, fields)
    expect(status).toBe(503)
    expect(body.error.code).toBe('no_plan')
  })
})
