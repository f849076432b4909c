import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AxeBuilder } from '@axe-core/playwright'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { sendMessage, setSampling, waitForTurn } from './chat-page.js'
import { launchChromium } from './chromium.js'
import { type E2eMesh, startE2eMesh } from './e2e-mesh.js'

// axe-core (@axe-core/playwright) on every view, in the states people see them in: a chat with
// turns, the provenance view and the advanced settings open; a tab contributing a stage; the
// mesh with that tab and a Node worker. No serious or critical violation, at desktop and phone
// sizes; a screenshot of each view at each size goes to test-results/e2e/.
const RESULTS = fileURLToPath(new URL('../test-results/e2e/', import.meta.url))
const SIZES = { desktop: { width: 1280, height: 900 }, phone: { width: 390, height: 844 } } as const
let mesh: E2eMesh
let browser: Browser
let page: Page

/** The serious and critical violations axe finds on the page as it is now. */
async function seriousViolations(): Promise<Array<{ id: string; nodes: string[] }>> {
  const results = await new AxeBuilder({ page }).analyze()
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({ id: v.id, nodes: v.nodes.map((n) => n.html.slice(0, 120)) }))
}

async function check(view: string): Promise<void> {
  for (const [size, viewport] of Object.entries(SIZES)) {
    await page.setViewportSize(viewport)
    expect(await seriousViolations(), `${view} at ${size}`).toEqual([])
    // Nothing sticks out sideways at phone width: the page itself scrolls only down.
    if (size === 'phone')
      expect(
        await page.evaluate('document.documentElement.scrollWidth'),
        `${view}: wider than the phone`,
      ).toBe(viewport.width)
    await page.screenshot({ path: join(RESULTS, `${view}-${size}.png`), fullPage: true })
  }
}

beforeAll(async () => {
  await mkdir(RESULTS, { recursive: true })
  mesh = await startE2eMesh(['--plan-strategy', 'uniform'])
  browser = await launchChromium()
  // AxeBuilder opens a page of its own for frames, which needs an explicit context.
  const context = await browser.newContext({ viewport: SIZES.desktop })
  page = await context.newPage()
  await page.goto(`${mesh.url}/?device=wasm`)
})

afterAll(async () => {
  await browser?.close()
  await mesh?.close()
})

describe('axe finds no serious or critical violation', () => {
  test('Contribute, while the tab serves a stage', async () => {
    await page.getByRole('button', { name: 'Contribute' }).click()
    await page.getByRole('switch', { name: 'Contribute this GPU' }).check()
    await page
      .getByTestId('contribute-phase')
      .getByText(/^Serving layers/)
      .waitFor({ timeout: 90_000 })
    await check('contribute')
  })

  test('Chat, with turns, the provenance view and the advanced settings', async () => {
    await page.getByRole('button', { name: 'Chat' }).click()
    await setSampling(page, { maxTokens: 12, temperature: 0 })
    await page.getByLabel('System prompt (optional)').fill('Be brief.')
    await sendMessage(page, 'A **bold** question with `code`?')
    await waitForTurn(page, 1, 'done', 90_000)
    await check('chat')
    await page.getByLabel('Show who computed each token').check()
    await page.getByTestId('tokens-1').getByRole('button').first().click()
    await page.getByTestId('token-details').waitFor()
    await check('chat-provenance')
  })

  test('Mesh, with the tab and the Node worker', async () => {
    await page.getByRole('button', { name: 'Mesh' }).click()
    await page.locator('[data-peer]').nth(1).waitFor()
    await page.locator('[data-peer]').first().click()
    await page.getByTestId('peer-details').waitFor()
    await check('mesh')
  })
})
