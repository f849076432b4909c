import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Browser, Page, Route } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { CHROMIUM_ARGS, launchChromium } from './chromium.js'
import { type E2eMesh, startE2eMesh } from './e2e-mesh.js'

// The Contribute view says what the tab is doing, in words, against a real server and a Node
// worker: it checks WebGPU, downloads its layers with a progress bar (the test holds back
// tensor requests so the bar is seen part-way), loads them, and serves, with a step count that grows as the mesh
// generates. A browser without a WebGPU adapter says why it computes on WASM.
const RESULTS = fileURLToPath(new URL('../test-results/e2e/', import.meta.url))
let mesh: E2eMesh
let browser: Browser

async function complete(prompt: string): Promise<void> {
  const res = await fetch(`${mesh.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: 16, temperature: 0 }),
  })
  expect(res.status).toBe(200)
}

const steps = async (page: Page) => Number(await page.getByTestId('contribute-steps').textContent())

beforeAll(async () => {
  await mkdir(RESULTS, { recursive: true })
  mesh = await startE2eMesh(['--plan-strategy', 'uniform'])
  browser = await launchChromium()
})

afterAll(async () => {
  await browser?.close()
  await mesh?.close()
})

describe('the Contribute view', () => {
  test('download progress reaches 100%, then the layers, then a growing step count', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    await page.goto(`${mesh.url}/?device=wasm`)
    await page.getByRole('button', { name: 'Contribute' }).click()
    expect(await page.getByTestId('contribute-device-reason').textContent()).toBe(
      ' · WASM because the page asked for it (?device=wasm)',
    )
    const toggle = page.getByRole('switch', { name: 'Contribute this GPU' })
    const phase = page.getByTestId('contribute-phase')
    await page.evaluate(`(() => {
      window.__phases = []
      window.__progress = []
      new MutationObserver(() => {
        const phase = document.querySelector('[data-testid="contribute-phase"]')?.dataset.phase
        if (phase && window.__phases.at(-1) !== phase) window.__phases.push(phase)
        const bar = document.querySelector('[data-testid="contribute-progress"]')
        if (bar && window.__progress.at(-1) !== bar.value) window.__progress.push(bar.value)
      }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true })
    })()`)
    // Each read of the weights file is one Range request: the test holds them and lets them
    // through one at a time until it has seen the bar part-way, however fast loopback is.
    const held: Route[] = []
    let arrived = () => {}
    let open = false
    const nextRequest = () =>
      new Promise<void>((resolve) => {
        if (held.length > 0) resolve()
        else arrived = resolve
      })
    await page.route('**/models/default/model.safetensors', (route) => {
      if (open || route.request().method() !== 'GET') return route.continue()
      held.push(route)
      arrived()
      return undefined
    })
    const partway = phase.getByText(/^Downloading layers \d+–\d+: \d+% \([1-9]\d* (B|KiB) of \d+ KiB/)
    const manifest = (await (await fetch(`${mesh.url}/models/default/manifest.json`)).json()) as {
      tensors: Record<string, { begin: number }>
    }
    const tensorStarts = new Set(Object.values(manifest.tensors).map((t) => t.begin))
    await toggle.check()
    // Let the header reads and the first tensor through; once the next read arrives, that tensor
    // has been counted, and the held read keeps the download part-way until the test has seen it.
    for (;;) {
      await nextRequest()
      const route = held.shift() as Route
      const start = Number(/^bytes=(\d+)-/.exec(route.request().headers().range ?? '')?.[1])
      await route.continue()
      if (tensorStarts.has(start)) break
    }
    await nextRequest()
    await partway.waitFor({ timeout: 30_000 })
    const part = Number(await page.getByTestId('contribute-progress').getAttribute('value'))
    expect(part).toBeLessThan(100)
    open = true
    for (const route of held.splice(0)) await route.continue()
    await phase.getByText(/^Serving layers \d+–\d+ on the CPU \(WASM\)/).waitFor({ timeout: 90_000 })
    const phases = (await page.evaluate('window.__phases')) as string[]
    const progress = (await page.evaluate('window.__progress')) as number[]
    // In order: joining, then (perhaps waiting for a plan) downloading, loading and serving.
    const order = ['checking', 'joining', 'waiting', 'downloading', 'loading', 'serving']
    const ranks = phases.map((p) => order.indexOf(p))
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b))
    expect(phases).toContain('downloading')
    expect(phases.at(-1)).toBe('serving')
    expect(progress.some((v) => v < 100)).toBe(true)
    expect(progress.at(-1)).toBe(100)
    expect(await page.getByTestId('contribute-progress-text').textContent()).toMatch(
      /^100%: (\d+ KiB) of \1 in \d+\.\d s$/,
    )
    expect(await page.getByTestId('contribute-layers').textContent()).toMatch(/^\d+–\d+$/)
    await page.screenshot({ path: join(RESULTS, 'contribute-serving.png'), fullPage: true })

    // The step count grows with each generation, and the tokens it helped with are counted.
    await complete('Once upon')
    await page
      .getByTestId('contribute-steps')
      .getByText(/^[1-9]\d*$/)
      .waitFor({ timeout: 20_000 })
    const first = await steps(page)
    await complete('A second')
    await page.waitForFunction(
      `Number(document.querySelector('[data-testid="contribute-steps"]').textContent) > ${first}`,
      undefined,
      { timeout: 20_000 },
    )
    expect(await steps(page)).toBeGreaterThan(first)
    await page
      .getByTestId('contribute-tokens')
      .getByText(/^[1-9]\d*$/)
      .waitFor({ timeout: 20_000 })
    await toggle.uncheck()
    await phase.getByText(/^Not contributing\./).waitFor({ timeout: 30_000 })
    await page.close()
  })

  test('a browser without a WebGPU adapter says why it computes on WASM, and suggests a budget', async () => {
    const noGpu = await launchChromium(CHROMIUM_ARGS.filter((a) => a !== '--enable-unsafe-webgpu'))
    try {
      const page = await noGpu.newPage()
      await page.goto(mesh.url)
      await page.getByRole('button', { name: 'Contribute' }).click()
      await page.getByTestId('contribute-device-reason').waitFor()
      expect(await page.getByTestId('contribute-device-reason').textContent()).toBe(
        ' · WASM: the browser has WebGPU but offered no GPU adapter (no GPU, a blocked driver, or WebGPU turned off)',
      )
      expect(await page.getByTestId('contribute-phase').textContent()).toBe(
        'Not contributing. Turned on, this tab would compute on the CPU (WASM).',
      )
      // The suggestion comes from the browser's own figures (deviceMemory, storage quota).
      const suggestion = (await page.getByTestId('contribute-suggestion').textContent()) ?? ''
      expect(suggestion).toMatch(
        /^Suggested: \d+(\.\d+)? GiB, because the browser reports about \d+ GiB of memory/,
      )
      const gib = suggestion.match(/^Suggested: (\d+(?:\.\d+)?) GiB/)?.[1] ?? ''
      await page.getByRole('button', { name: `Use ${gib} GiB` }).click()
      expect(await page.getByLabel('Memory budget (GiB)').inputValue()).toBe(gib)
      await page.screenshot({ path: join(RESULTS, 'contribute-no-webgpu.png'), fullPage: true })
    } finally {
      await noGpu.close()
    }
  })
})
