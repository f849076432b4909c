import { type Coturn, startCoturn, until } from '@butterfly/testing/node'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { setRawMode, setSampling } from './chat-page.js'
import { launchChromium } from './chromium.js'
import { type E2eMesh, startE2eMesh } from './e2e-mesh.js'

// A Chromium tab contributes a stage next to a Node worker with relay-only ICE: every
// connection (gateway–worker, gateway–tab, tab–worker) goes through a real coturn, with
// credentials the server minted at each join. The chat must still give the single-process text.
const SECRET = 'turn-browser-secret'
const MAX_TOKENS = 16
const PROMPT = 'Now is the winter'
let coturn: Coturn
let mesh: E2eMesh
let browser: Browser

interface Health {
  meshes: Array<{
    ready: boolean
    plan: { stages: unknown[] }
    peers: Array<{ id: string; backend: string }>
  }>
}

beforeAll(async () => {
  coturn = await startCoturn(SECRET)
  mesh = await startE2eMesh([
    '--plan-strategy',
    'uniform',
    '--turn-secret',
    SECRET,
    '--turn-url',
    coturn.url,
    '--ice-transport-policy',
    'relay',
  ])
  browser = await launchChromium()
}, 120_000)

afterAll(async () => {
  await browser?.close()
  await mesh?.close()
  await coturn?.stop()
})

describe('a tab with relay-only ICE', () => {
  test('contributes a stage through coturn and the chat gives the single-process text', async () => {
    const reference = await mesh.generate(PROMPT, MAX_TOKENS)
    const tab: Page = await browser.newPage()
    await tab.goto(`${mesh.url}/?device=wasm`)
    await tab.getByRole('button', { name: 'Contribute' }).click()
    await tab.getByRole('switch', { name: 'Contribute this GPU' }).check()
    await tab
      .getByTestId('contribute-layers')
      .getByText(/^\d+–\d+$/)
      .waitFor({ timeout: 90_000 })
      .catch(async (err: unknown) => {
        // Says where the tab stopped (CI once saw it get no layers in 90 s; alone it takes 4 s).
        const phase = await tab.getByTestId('contribute-phase').textContent()
        const peers = await fetch(`${mesh.url}/health`).then((r) => r.text())
        throw new Error(`${String(err)}\ntab phase: ${phase}\nhealth: ${peers.slice(0, 2000)}`)
      })
    const health = await until<Health>(
      `${mesh.url}/health`,
      (h) => h.meshes[0]?.ready === true && h.meshes[0].plan.stages.length === 2,
    )
    const tabPeer = health.meshes[0]?.peers.find((p) => p.backend === 'wasm')?.id
    expect(tabPeer).toBeDefined()

    const page = await browser.newPage()
    await page.goto(mesh.url)
    await setRawMode(page, true)
    await setSampling(page, { maxTokens: MAX_TOKENS, temperature: 0 })
    await page.getByLabel('Prompt', { exact: true }).fill(PROMPT)
    await page.getByRole('button', { name: 'Send' }).click()
    await page
      .getByTestId('chat-status')
      .getByText(/^done: /)
      .waitFor({ timeout: 90_000 })
    expect(await page.getByTestId('completion').textContent()).toBe(reference)
    // The tab allocated a relay under its own minted username, and relayed data needed permissions.
    expect(coturn.output()).toMatch(
      new RegExp(`user <\\d+:${tabPeer}>: incoming packet ALLOCATE processed, success`),
    )
    expect(
      coturn.output().match(/(?:CREATE_PERMISSION|CHANNEL_BIND) processed, success/g)?.length ?? 0,
    ).toBeGreaterThanOrEqual(4)
    expect(coturn.output()).not.toContain(SECRET)
    await page.close()
    await tab.close()
  }, 240_000)
})
