import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Proc, SERVER_BIN, start, until, WORKER_BIN } from '@butterfly/testing/node'
import OpenAI from 'openai'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { replyText, sendMessage, setSampling, waitForTurn } from './chat-page.js'
import { launchChromium } from './chromium.js'

// The server is killed and started again on the same port, as a crash and a supervisor would:
// an open chat tab says it lost the server and that it is back, a contributing tab and the Node
// worker rejoin by themselves and serve again, and the next chat reply equals the API's text.
// At phone size.
const RESULTS = fileURLToPath(new URL('../test-results/e2e/', import.meta.url))
let cache: string
let server: Proc
let worker: Proc
let url: string
let browser: Browser

const serverArgs = (port: string) => [
  '--port',
  port,
  '--model',
  'synthetic:tiny',
  '--plan-strategy',
  'uniform',
]
const env = () => ({ BUTTERFLY_CACHE_DIR: cache })
const startWorker = () =>
  start(WORKER_BIN, ['join', '--server', url, '--device', 'cpu', '--name', 'node-worker'], {
    ...env(),
    BUTTERFLY_IDENTITY: join(cache, 'worker.identity.json'),
  })

type Health = { meshes: Array<{ ready: boolean; plan: { stages: unknown[] } }> }
const twoStagesReady = (h: Health) => h.meshes[0]?.ready === true && h.meshes[0].plan.stages.length === 2

beforeAll(async () => {
  await mkdir(RESULTS, { recursive: true })
  cache = await mkdtemp(join(tmpdir(), 'bf-e2e-restart-'))
  server = start(SERVER_BIN, serverArgs('0'), env())
  url = (await server.waitFor(/listening on (http:\/\/\S+)/))[1] as string
  worker = startWorker()
  await until<Health>(`${url}/health`, (h) => h.meshes[0]?.ready === true)
  browser = await launchChromium()
})

afterAll(async () => {
  await browser?.close()
  await Promise.all([worker?.stop(), server?.stop()])
  await rm(cache, { recursive: true, force: true })
})

describe('a server restart', () => {
  test('the page says the server is lost and back; a contributing tab rejoins; chat works again', async () => {
    const phone = { viewport: { width: 390, height: 844 } }
    const tab: Page = await browser.newPage(phone)
    await tab.goto(`${url}/?device=wasm`)
    await tab.getByRole('button', { name: 'Contribute' }).click()
    await tab.getByRole('switch', { name: 'Contribute this GPU' }).check()
    const phase = tab.getByTestId('contribute-phase')
    await phase.getByText(/^Serving layers/).waitFor({ timeout: 90_000 })
    await until<Health>(`${url}/health`, twoStagesReady)
    const chat: Page = await browser.newPage(phone)
    await chat.goto(url)
    await chat.locator('[data-testid="connection"][data-state="online"]').waitFor({ state: 'attached' })

    // A crash: the server is killed; the worker keeps trying to rejoin, the pages notice.
    await server.stop('SIGKILL')
    await worker.waitFor(/no server takes this worker back yet; trying again/)
    await chat
      .getByTestId('connection')
      .getByText(/^The server cannot be reached\./)
      .waitFor({ timeout: 20_000 })
    await phase.getByText(/^Lost the server \(/).waitFor({ timeout: 20_000 })
    await chat.screenshot({ path: join(RESULTS, 'server-lost-phone.png') })

    // The supervisor starts it again on the same port; the worker rejoins it with its stage.
    server = start(SERVER_BIN, serverArgs(new URL(url).port), env())
    await server.waitFor(/listening on/)
    await worker.waitFor(/rejoined the mesh through/)
    expect(worker.child.exitCode).toBeNull()
    await chat
      .getByTestId('connection')
      .getByText(/^Reconnected to the server/)
      .waitFor({ timeout: 20_000 })
    await phase.getByText(/^Serving layers/).waitFor({ timeout: 90_000 })
    await until<Health>(`${url}/health`, twoStagesReady, 90_000)

    // The chat works again through the rejoined tab, with the API's text.
    await setSampling(chat, { maxTokens: 16, temperature: 0 })
    await sendMessage(chat, 'Are you back?')
    await waitForTurn(chat, 1, 'done', 90_000)
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused' })
    const model = (await client.models.list()).data[0]?.id ?? ''
    const res = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Are you back?' }],
      max_tokens: 16,
      temperature: 0,
    })
    expect(await replyText(chat, 1)).toBe(res.choices[0]?.message.content)
    await chat.screenshot({ path: join(RESULTS, 'server-back-phone.png') })
  })
})
