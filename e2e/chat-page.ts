import type { Page } from 'playwright-core'

// Drives the chat view the way a person does (labels and roles, no internals): shared by the
// chat suites.

/** Opens "Advanced" (if it is closed) and sets the sampling fields given. */
export async function setSampling(
  page: Page,
  s: { maxTokens?: number; temperature?: number; seed?: number | '' },
): Promise<void> {
  const advanced = page.locator('details.advanced')
  if ((await advanced.getAttribute('open')) === null) await advanced.locator('summary').click()
  if (s.maxTokens !== undefined) await page.getByLabel('Max tokens').fill(String(s.maxTokens))
  if (s.temperature !== undefined) await page.getByLabel('Temperature').fill(String(s.temperature))
  if (s.seed !== undefined) await page.getByLabel('Seed').fill(String(s.seed))
}

/** Turns raw completion mode on or off (inside "Advanced"). */
export async function setRawMode(page: Page, on: boolean): Promise<void> {
  await setSampling(page, {})
  await page.getByLabel(/Raw completion mode/).setChecked(on)
}

/** Waits until turn `index` (0-based, user and assistant turns alike) is in `state`. */
export async function waitForTurn(page: Page, index: number, state: string, timeout = 60_000): Promise<void> {
  await page.locator(`[data-testid="message-${index}"][data-state="${state}"]`).waitFor({ timeout })
}

/** Types a message and sends it; the reply will be turn `index`. */
export async function sendMessage(page: Page, text: string): Promise<void> {
  await page.getByLabel('Message', { exact: true }).fill(text)
  await page.getByRole('button', { name: 'Send', exact: true }).click()
}

/** A reply's exact streamed text, read from the provenance view (one button per piece, no Markdown). */
export async function replyText(page: Page, index: number): Promise<string> {
  const toggle = page.getByLabel('Show who computed each token')
  const wasOn = await toggle.isChecked()
  if (!wasOn) await toggle.check()
  const text = (await page.getByTestId(`tokens-${index}`).textContent()) ?? ''
  if (!wasOn) await toggle.uncheck()
  return text
}

/** Slows the page's downloads so a reply visibly streams (and can be stopped) on a fast mesh. */
export async function throttle(page: Page, bytesPerSecond: number): Promise<void> {
  const cdp = await page.context().newCDPSession(page)
  await cdp.send('Network.enable')
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: bytesPerSecond,
    uploadThroughput: -1,
  })
}
