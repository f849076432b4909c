import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { setRawMode, setSampling } from './chat-page.js'
import { launchChromium } from './chromium.js'
import { type E2eMesh, startE2eMesh } from './e2e-mesh.js'

// The web app in real Chromium against a real server and a real worker process: a prompt typed
// into the chat UI streams exactly the text `butterfly-worker generate` gives in one process.
const RESULTS = fileURLToPath(new URL('../test-results/e2e/', import.meta.url))
const MAX_TOKENS = 24
let mesh: E2eMesh
let url: string
let browser: Browser
const errors: string[] = []

async function openApp(): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } })
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text())
  })
  page.on('pageerror', (e) => errors.push(e.message))
  await page.goto(url)
  return page
}

beforeAll(async () => {
  await mkdir(RESULTS, { recursive: true })
  mesh = await startE2eMesh()
  url = mesh.url
  browser = await launchChromium()
})

afterAll(async () => {
  await browser?.close()
  await mesh?.close()
})

describe('web app', () => {
  test('the server sends the page cross-origin isolated', async () => {
    const res = await fetch(url)
    expect(res.status).toBe(200)
    expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin')
    expect(res.headers.get('cross-origin-embedder-policy')).toBe('require-corp')
  })

  test('a prompt typed into the chat streams exactly the single-process tokens', async () => {
    const prompt = 'To be, or not'
    const reference = await mesh.generate(prompt, MAX_TOKENS)
    expect(reference.length).toBeGreaterThan(0)
    const page = await openApp()
    // Raw completion mode (behind "Advanced") sends the prompt as is, like `generate` does.
    await setRawMode(page, true)
    await setSampling(page, { maxTokens: MAX_TOKENS, temperature: 0 })
    await page.getByLabel('Prompt', { exact: true }).fill(prompt)
    await page.getByRole('button', { name: 'Send' }).click()
    await page
      .getByTestId('chat-status')
      .getByText(/^done: /)
      .waitFor({ timeout: 60_000 })
    expect(await page.getByTestId('completion').textContent()).toBe(reference)
    expect(await page.getByTestId('chat-status').textContent()).toContain(`${MAX_TOKENS} tokens`)
    expect(await page.evaluate('crossOriginIsolated')).toBe(true)
    // Each token says which peer computed its stage: here the one Node worker, no vote (r = 1).
    expect(await page.getByTestId('token-details').textContent()).toMatch(/stage 0: node-worker$/)
    await page
      .getByRole('button', {
        name: /\(token 1: computed by one peer, not replicated; show which peers computed it\)$/,
      })
      .click()
    expect(await page.getByTestId('token-details').textContent()).toMatch(/^Token 1: .*stage 0: node-worker$/)
    await page.screenshot({ path: join(RESULTS, 'chat.png'), fullPage: true })
    await page.close()
  })

  test('the mesh view shows the worker, its class and the plan', async () => {
    const page = await openApp()
    await page.getByRole('button', { name: 'Mesh' }).click()
    await page.getByRole('cell', { name: 'node-worker' }).waitFor()
    expect(await page.getByRole('cell', { name: 'cpu/fp32' }).count()).toBe(1)
    // Peers are grouped by stage: stage 0 holds layers 0–3, on the one worker.
    const group = page.getByTestId('group-stage-0')
    expect(await group.locator('h4').textContent()).toMatch(
      /^▾ Stage 0 · layers 0–3 1 peer · median round trip/,
    )
    expect(await group.locator('[data-peer]').textContent()).toMatch(/^node-worker/)
    // The worker is stage 0's primary, its link has a measured round trip (the chat above made
    // the gateway dial it), shown on the map's edge to its stage.
    const node = page.locator('[data-peer]')
    await node
      .and(
        page.getByRole('button', {
          name: /^node-worker cpu\/fp32 · \d+\.\d ms, stage 0 primary; cpu\/fp32; round trip \d+\.\d ms/,
        }),
      )
      .waitFor()
    expect(await node.count()).toBe(1)
    expect(await page.getByTestId('topology-default').locator('.rtt').textContent()).toMatch(/^\d+\.\d ms$/)
    // Keyboard only: Tab reaches the peer, Enter opens its details.
    let focused = ''
    for (let i = 0; i < 40 && focused === ''; i++) {
      await page.keyboard.press('Tab')
      focused = await page.evaluate<string>("document.activeElement?.getAttribute('data-peer') ?? ''")
    }
    expect(focused).not.toBe('')
    await page.keyboard.press('Enter')
    expect(await page.getByTestId('peer-details').textContent()).toMatch(
      /rolestage 0 primary.*cpu \(cpu\/fp32\)/,
    )
    // Tokens generated while the view is open show up in the throughput chart.
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: Array<{ id: string }> }
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: models.data[0]?.id,
        prompt: 'Once',
        max_tokens: MAX_TOKENS,
        temperature: 0,
      }),
    })
    expect(res.status).toBe(200)
    await page.waitForFunction(
      `Number(document.querySelector('[data-testid="throughput-now-default"]')?.textContent) > 0`,
      undefined,
      { timeout: 20_000 },
    )
    expect(await page.getByTestId('throughput-default').locator('.bar').count()).toBeGreaterThan(0)
    await page.screenshot({ path: join(RESULTS, 'mesh.png'), fullPage: true })
    await page.close()
  })

  test('an error from the mesh is shown in words, and the page logs no console errors', async () => {
    const page = await openApp()
    await page.getByLabel('Message', { exact: true }).fill('a'.repeat(600))
    await page.getByRole('button', { name: 'Send' }).click()
    const alert = page.getByRole('alert')
    await alert.waitFor()
    expect(await alert.textContent()).toMatch(
      /The mesh could not answer: the prompt is \d+ tokens; the model's context is 512/,
    )
    await page.close()
    // The refused request is the only thing the console may mention.
    expect(errors.filter((e) => !/status of 400/.test(e))).toEqual([])
  })
})
