import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Proc, start, until, WORKER_BIN } from '@butterfly/testing/node'
import OpenAI from 'openai'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { replyText, sendMessage, setSampling, waitForTurn } from './chat-page.js'
import { launchChromium } from './chromium.js'

// The model picker against a real server hosting two meshes (fixtures/two-mesh-server.mjs:
// synthetic:tiny on "default", synthetic:small on "second") and real worker processes: each
// model is listed with its size and readiness, readiness follows the mesh, and a chat with the
// chosen model equals the API's text for that model.
const RESULTS = fileURLToPath(new URL('../test-results/e2e/', import.meta.url))
const SERVER = fileURLToPath(new URL('./fixtures/two-mesh-server.mjs', import.meta.url))
let cache: string
let server: Proc
const workers: Proc[] = []
let url: string
let browser: Browser
let page: Page

type Health = { meshes: Array<{ name: string; modelId: string; ready: boolean }> }
const joinWorker = (mesh: string) =>
  workers.push(
    start(WORKER_BIN, ['join', '--server', url, '--mesh', mesh, '--device', 'cpu', '--name', `w-${mesh}`], {
      BUTTERFLY_CACHE_DIR: cache,
      BUTTERFLY_IDENTITY: join(cache, `${mesh}.identity.json`),
    }),
  )

/** The picker's words for a model: as the page formats them, from the mesh's manifest. */
async function optionText(mesh: Health['meshes'][number], ready: string): Promise<string> {
  const manifest = (await (await fetch(`${url}/models/${mesh.name}/manifest.json`)).json()) as {
    files: Record<string, { size: number }>
  }
  const bytes = Object.values(manifest.files).reduce((n, f) => n + f.size, 0)
  return `${mesh.modelId} (${mesh.name}), ${(bytes / 2 ** 20).toFixed(1)} MiB, ${ready}`
}

beforeAll(async () => {
  await mkdir(RESULTS, { recursive: true })
  cache = await mkdtemp(join(tmpdir(), 'bf-e2e-picker-'))
  server = start(SERVER, [], { BUTTERFLY_CACHE_DIR: cache })
  url = (await server.waitFor(/listening on (http:\/\/\S+)/))[1] as string
  joinWorker('default')
  await until<Health>(`${url}/health`, (h) => h.meshes.find((m) => m.name === 'default')?.ready === true)
  browser = await launchChromium()
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  await page.goto(url)
})

afterAll(async () => {
  await browser?.close()
  await Promise.all([...workers.map((w) => w.stop()), server?.stop()])
  await rm(cache, { recursive: true, force: true })
})

describe('the model picker', () => {
  test('lists each model with its size and readiness, and chats with the chosen one', async () => {
    const health = (await (await fetch(`${url}/health`)).json()) as Health
    const [tiny, small] = ['default', 'second'].map((n) => health.meshes.find((m) => m.name === n)) as [
      Health['meshes'][number],
      Health['meshes'][number],
    ]
    const options = page.getByTestId('model-picker').locator('option')
    await options.nth(1).waitFor({ state: 'attached' })
    expect(await options.allTextContents()).toEqual([
      await optionText(tiny, 'ready on 1 peer'),
      await optionText(small, 'not ready yet'),
    ])
    // A worker joins the second mesh: the picker says so at its next refresh.
    joinWorker('second')
    await until<Health>(`${url}/health`, (h) => h.meshes.find((m) => m.name === 'second')?.ready === true)
    const smallReady = await optionText(small, 'ready on 1 peer')
    await options.getByText(smallReady).waitFor({ state: 'attached', timeout: 15_000 })

    await page.getByTestId('model-picker').selectOption(small.modelId)
    await setSampling(page, { maxTokens: 16, temperature: 0 })
    await sendMessage(page, 'Which model are you?')
    await waitForTurn(page, 1, 'done', 90_000)
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused' })
    const res = await client.chat.completions.create({
      model: small.modelId,
      messages: [{ role: 'user', content: 'Which model are you?' }],
      max_tokens: 16,
      temperature: 0,
    })
    const reference = res.choices[0]?.message.content ?? ''
    const other = await client.chat.completions.create({
      model: tiny.modelId,
      messages: [{ role: 'user', content: 'Which model are you?' }],
      max_tokens: 16,
      temperature: 0,
    })
    expect(reference).not.toBe(other.choices[0]?.message.content)
    expect(await replyText(page, 1)).toBe(reference)
    await page.screenshot({ path: join(RESULTS, 'model-picker.png'), fullPage: true })
  })
})
