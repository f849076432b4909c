import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Proc, SERVER_BIN, start, until, WORKER_BIN } from '@butterfly/testing/node'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { setRawMode, setSampling } from './chat-page.js'
import { launchChromium } from './chromium.js'
import { type E2eMesh, startE2eMesh } from './e2e-mesh.js'

// A browser tab contributes a pipeline stage (onnxruntime-web on WASM, in a Web Worker) next to
// one Node worker; prompts typed into a second tab's chat stream exactly the single-process text.
// Then the contributing tab is closed mid-generation and the generation still completes intact.
const RESULTS = fileURLToPath(new URL('../test-results/e2e/', import.meta.url))
const MAX_TOKENS = 24
const PROMPT = 'Now is the winter'
let mesh: E2eMesh
let url: string
let browser: Browser
let profile: BrowserContext | undefined

interface Health {
  meshes: Array<{
    ready: boolean
    plan: { stages: Array<{ peerId: string; replicas?: string[] }> }
    peers: Array<{ id: string; backend: string }>
  }>
}

const cliGenerate = (prompt: string) => mesh.generate(prompt, MAX_TOKENS)

/** A tab that turns on "Contribute this GPU" and waits until it hosts layers. */
async function contributingTab(device: 'wasm' | 'webgpu'): Promise<Page> {
  // One browser profile for every contributing tab, so storage (key, tensor cache) carries over.
  profile ??= await browser.newContext()
  const page = await profile.newPage()
  await page.goto(`${url}/?device=${device}`)
  await page.getByRole('button', { name: 'Contribute' }).click()
  await page.getByRole('switch', { name: 'Contribute this GPU' }).check()
  await page
    .getByTestId('contribute-layers')
    .getByText(/^\d+–\d+$/)
    .waitFor({ timeout: 90_000 })
  return page
}

async function chat(prompt: string): Promise<{ page: Page; text: string | null }> {
  const page = await browser.newPage()
  await page.goto(url)
  await setRawMode(page, true)
  await setSampling(page, { maxTokens: MAX_TOKENS, temperature: 0 })
  await page.getByLabel('Prompt', { exact: true }).fill(prompt)
  await page.getByRole('button', { name: 'Send' }).click()
  await page
    .getByTestId('chat-status')
    .getByText(/^done: /)
    .waitFor({ timeout: 90_000 })
  return { page, text: await page.getByTestId('completion').textContent() }
}

/** Streams a completion through the API, calling `onToken` after each chunk. */
async function apiText(prompt: string, onChunk: (n: number) => Promise<void>): Promise<string> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: MAX_TOKENS, temperature: 0, stream: true }),
  })
  expect(res.status).toBe(200)
  let text = ''
  let n = 0
  let buffer = ''
  const decoder = new TextDecoder()
  for await (const bytes of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(bytes, { stream: true })
    for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
      const data = buffer.slice(6, end)
      buffer = buffer.slice(end + 2)
      if (data === '[DONE]') return text
      text += (JSON.parse(data) as { choices: Array<{ text: string }> }).choices[0]?.text ?? ''
      await onChunk(++n)
    }
  }
  throw new Error('stream ended without [DONE]')
}

beforeAll(async () => {
  mesh = await startE2eMesh(['--plan-strategy', 'uniform'])
  url = mesh.url
  browser = await launchChromium()
})

afterAll(async () => {
  await browser?.close()
  await mesh?.close()
})

describe('a browser tab as a pipeline stage', () => {
  test('a tab contributing on WASM serves a stage next to a Node worker; chat gives the single-process text', async () => {
    const reference = await cliGenerate(PROMPT)
    const tab = await contributingTab('wasm')
    const health = await until<Health>(
      `${url}/health`,
      (h) => h.meshes[0]?.ready === true && h.meshes[0].plan.stages.length === 2,
    )
    expect(health.meshes[0]?.peers.map((p) => p.backend).sort()).toEqual(['cpu', 'wasm'])
    const { page, text } = await chat(PROMPT)
    expect(text).toBe(reference)
    await tab.screenshot({ path: join(RESULTS, 'contribute.png'), fullPage: true })
    // The tab's view polls its counters every 500 ms: wait for the poll that shows the steps.
    await tab
      .getByTestId('contribute-steps')
      .getByText(/^[1-9]\d*$/)
      .waitFor({ timeout: 10_000 })
    expect(Number(await tab.getByTestId('contribute-steps').textContent())).toBeGreaterThan(0)
    // It received hidden states and sent results: real traffic both ways.
    expect(await tab.getByTestId('contribute-bytes').textContent()).toMatch(
      /^[1-9]\d* (B|KiB) \/ [1-9]\d* (B|KiB)$/,
    )
    expect(await tab.getByTestId('contribute-weights').textContent()).toMatch(
      /^[1-9]\d* tensors downloaded, 0 from/,
    )
    await page.close()

    // Closing the contributing tab mid-generation: the mesh re-plans onto the Node worker and
    // the generation replays its tokens there, finishing with the same text.
    const closed = await apiText(PROMPT, async (n) => {
      if (n === 5) await tab.close()
    })
    expect(closed).toBe(reference)

    // Coming back: the same peer (its key is kept in the tab's storage) gets the same layers and
    // loads them from the browser's cache, each checked against the manifest's hash.
    const again = await contributingTab('wasm')
    expect(await again.getByTestId('contribute-weights').textContent()).toMatch(
      /^0 tensors downloaded, [1-9]\d* from/,
    )
    const { page: after, text: afterText } = await chat(PROMPT)
    expect(afterText).toBe(reference)
    await after.close()
    await again.close()
  })
})

describe('a tab on WebGPU among CPU replicas', () => {
  let rServer: Proc
  let rUrl: string
  const rWorkers: Proc[] = []

  beforeAll(async () => {
    rServer = start(
      SERVER_BIN,
      [
        '--port',
        '0',
        '--model',
        'synthetic:tiny',
        '--replicas',
        '3',
        // SwiftShader compiles the tab's shaders on its first step, which under a loaded test run
        // can outlast the default deadline; a missed deadline would retire the tab before it votes.
        '--step-timeout-ms',
        '300000',
      ],
      {
        BUTTERFLY_CACHE_DIR: mesh.cache,
      },
    )
    rUrl = (await rServer.waitFor(/listening on (http:\/\/\S+)/))[1] as string
    for (const name of ['cpu-a', 'cpu-b']) {
      rWorkers.push(
        start(WORKER_BIN, ['join', '--server', rUrl, '--device', 'cpu', '--name', name], {
          BUTTERFLY_CACHE_DIR: mesh.cache,
          BUTTERFLY_IDENTITY: join(mesh.cache, `${name}.identity.json`),
        }),
      )
    }
  })

  afterAll(async () => {
    await Promise.all([...rWorkers.map((w) => w.stop()), rServer?.stop()])
  })

  test("the tab's WebGPU outputs pass the votes against CPU replicas, and the tokens are the single-process ones", async () => {
    const reference = await cliGenerate(PROMPT)
    const page = await browser.newPage()
    await page.goto(`${rUrl}/?device=webgpu`)
    await page.getByRole('button', { name: 'Contribute' }).click()
    await page.getByRole('switch', { name: 'Contribute this GPU' }).check()
    await page
      .getByTestId('contribute-layers')
      .getByText(/^\d+–\d+$/)
      .waitFor({ timeout: 120_000 })
    expect(await page.getByTestId('contribute-status').textContent()).toContain('WebGPU')
    type RHealth = Health & {
      meshes: Array<{
        reputation?: { peers: Array<{ peerId: string; agreements: number; disagreements: number }> }
      }>
    }
    const tabId = (await page.getByTestId('contribute-peer').textContent()) ?? ''
    // Ready, with the tab among the stage's replicas (not a plan from before it joined).
    await until<RHealth>(
      `${rUrl}/health`,
      (h) =>
        h.meshes[0]?.ready === true &&
        h.meshes[0].plan.stages.some((s) => [s.peerId, ...(s.replicas ?? [])].includes(tabId)),
      120_000,
    )
    const res = await fetch(`${rUrl}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', prompt: PROMPT, max_tokens: MAX_TOKENS, temperature: 0 }),
    })
    const body = (await res.json()) as { choices: Array<{ text: string }> }
    expect(body.choices[0]?.text).toBe(reference)
    const health = (await (await fetch(`${rUrl}/health`)).json()) as RHealth
    const votes = health.meshes[0]?.reputation?.peers.find((p) => p.peerId === tabId)
    expect(
      votes?.agreements,
      JSON.stringify({
        votes,
        plan: health.meshes[0]?.plan,
        log: await page
          .locator('details pre')
          .textContent()
          .catch(() => ''),
      }),
    ).toBeGreaterThan(0)
    expect(votes?.disagreements).toBe(0)
    expect(health.meshes[0]?.peers.find((p) => p.id === tabId)?.backend).toBe('webgpu')
    await page.close()
  })
})
