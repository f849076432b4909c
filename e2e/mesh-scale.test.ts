import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AxeBuilder } from '@axe-core/playwright'
import { until } from '@butterfly/testing/node'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { launchChromium } from './chromium.js'
import { type E2eMesh, startE2eMesh } from './e2e-mesh.js'
import { joinSimulatedPeers, type SimulatedPeers } from './simulated-peers.js'

// The mesh view at scale: a real server and worker, plus 120 simulated peers (socket.io
// clients in this process that join as a worker does). The view renders every peer within 2 s
// of being opened, groups them by stage with counts, and every peer can be reached from the
// keyboard (Tab) and found with the search.
const RESULTS = fileURLToPath(new URL('../test-results/e2e/', import.meta.url))
const SIMULATED = 120
let mesh: E2eMesh
let sim: SimulatedPeers
let browser: Browser
let page: Page
let ids: string[]

beforeAll(async () => {
  await mkdir(RESULTS, { recursive: true })
  mesh = await startE2eMesh(['--replicas', '3', '--max-peers-per-address', '200', '--join-rate', '100000'])
  sim = await joinSimulatedPeers(mesh.url, 'default', SIMULATED)
  const health = await until<{ meshes: Array<{ peers: Array<{ id: string }> }> }>(
    `${mesh.url}/health`,
    (h) => h.meshes[0]?.peers.length === SIMULATED + 1,
  )
  ids = health.meshes[0]?.peers.map((p) => p.id) ?? []
  browser = await launchChromium()
  page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage()
  await page.goto(mesh.url)
})

afterAll(async () => {
  await browser?.close()
  await sim?.close()
  await mesh?.close()
})

const chips = () => page.locator('[data-peer]')

describe('the mesh view with 121 peers', () => {
  test('renders every peer, grouped by stage, within 2 s of opening', async () => {
    const opened = Date.now()
    await page.getByRole('button', { name: 'Mesh' }).click()
    await page.waitForFunction(
      `document.querySelectorAll('[data-peer]').length === ${ids.length}`,
      undefined,
      {
        timeout: 10_000,
      },
    )
    expect(Date.now() - opened).toBeLessThan(2000)
    expect((await chips().evaluateAll((els) => els.map((e) => e.getAttribute('data-peer')))).sort()).toEqual(
      [...ids].sort(),
    )
    expect(await page.getByTestId('peer-count-default').textContent()).toBe(`${ids.length} peers`)
    // Group counts add up to every peer once, and the map has one box per group.
    const counts = await page
      .locator('.peer-group h4 .meta')
      .allTextContents()
      .then((ts) => ts.map((t) => Number(/^(\d+) peers?/.exec(t)?.[1])))
    expect(counts.reduce((a, b) => a + b, 0)).toBe(ids.length)
    expect(await page.getByRole('button', { name: /show its peers$/ }).count()).toBe(counts.length)
    await page.screenshot({ path: join(RESULTS, 'mesh-120-desktop.png'), fullPage: true })
    // axe at this size too: no serious or critical violation with 121 peers on the page.
    const { violations } = await new AxeBuilder({ page }).analyze()
    expect(
      violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id),
    ).toEqual([])
  })

  test('Tab reaches every peer, and Enter opens its details', async () => {
    await chips().first().focus()
    const reached = new Set<string>()
    for (let i = 0; i < ids.length * 2; i++) {
      const at = await page.evaluate<string | null>(
        `document.activeElement?.getAttribute('data-peer') ?? null`,
      )
      const inGroups = await page.evaluate<boolean>(`!!document.activeElement?.closest('.stage-groups')`)
      if (!inGroups) break
      if (at !== null) reached.add(at)
      await page.keyboard.press('Tab')
    }
    expect([...reached].sort()).toEqual([...ids].sort())
    await chips().last().focus()
    await page.keyboard.press('Enter')
    expect(await page.getByTestId('peer-details').textContent()).toContain(
      (await chips().last().getAttribute('data-peer')) ?? 'missing',
    )
  })

  test('the search finds a peer by name; collapsed groups open from the map', async () => {
    const search = page.getByTestId('peer-search-default')
    for (const name of ['sim-000', 'sim-042', 'sim-077', `sim-${SIMULATED - 1}`, 'node-worker']) {
      await search.fill(name)
      await page.getByTestId('peer-count-default').getByText(`1 of ${ids.length} peers match`).waitFor()
      expect(await chips().count()).toBe(1)
      expect(await chips().getAttribute('aria-label')).toMatch(new RegExp(`^${name}[ ,]`))
    }
    await search.fill('')
    await page.getByRole('button', { name: 'Collapse all' }).click()
    expect(await chips().count()).toBe(0)
    // The map's box for the peers without layers opens that group (keyboard: focus, Enter).
    const idleBox = page.getByRole('button', { name: /^No layers \d+ peers; / })
    const idle = Number(/^No layers (\d+) peers/.exec((await idleBox.getAttribute('aria-label')) ?? '')?.[1])
    await idleBox.focus()
    await page.keyboard.press('Enter')
    await page.getByTestId('group-idle').locator('[data-peer]').first().waitFor()
    expect(await chips().count()).toBe(idle)
    await page.getByRole('button', { name: 'Expand all' }).click()
    await page.setViewportSize({ width: 390, height: 844 })
    await page.screenshot({ path: join(RESULTS, 'mesh-120-phone.png'), fullPage: false })
  })
})
