import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import OpenAI from 'openai'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { replyText, sendMessage, setSampling, throttle, waitForTurn } from './chat-page.js'
import { launchChromium } from './chromium.js'
import { type E2eMesh, startE2eMesh } from './e2e-mesh.js'

// A conversation in real Chromium against a real server and worker: every reply equals what
// /v1/chat/completions returns for the same messages (the official openai client, greedy or
// seeded), the conversation survives a reload (IndexedDB), and regenerate, edit-and-resend and
// stop do what they say. Markdown (and an attempt at injecting HTML) goes through the renderer.
const RESULTS = fileURLToPath(new URL('../test-results/e2e/', import.meta.url))
const SYSTEM = 'You answer in Markdown.'
const MARKDOWN = [
  'Compare these, please:',
  '',
  '| a | b |',
  '| - | - |',
  '| 1 | 2 |',
  '',
  '- first',
  '- second',
  '',
  '```js',
  'const x = 1',
  '```',
  '<script>window.__injected = "script"</script><img src="x" onerror="window.__injected = \'img\'">',
].join('\n')
const TURNS = ['Hello there.', MARKDOWN, 'And a third question?']
type Msg = { role: 'system' | 'user' | 'assistant'; content: string }

let mesh: E2eMesh
let browser: Browser
let context: BrowserContext
let page: Page
let client: OpenAI
let model: string

/** The API's text for `messages`, with the sampling the page uses. */
async function apiReply(messages: Msg[], s: { maxTokens: number; temperature: number; seed?: number }) {
  const res = await client.chat.completions.create({
    model,
    messages,
    max_tokens: s.maxTokens,
    temperature: s.temperature,
    ...(s.seed === undefined ? {} : { seed: s.seed }),
  })
  return res.choices[0]?.message.content ?? ''
}

/** Every turn's text as the page holds it (assistant turns read exactly, from the tokens view). */
async function history(): Promise<Msg[]> {
  const out: Msg[] = [{ role: 'system', content: SYSTEM }]
  const n = await page.locator('[data-testid^="message-"]').count()
  for (let i = 0; i < n; i++) {
    const role = (await page.getByTestId(`message-${i}`).getAttribute('data-role')) as 'user' | 'assistant'
    out.push({ role, content: role === 'assistant' ? await replyText(page, i) : (TURNS[i / 2] ?? '') })
  }
  return out
}

beforeAll(async () => {
  await mkdir(RESULTS, { recursive: true })
  mesh = await startE2eMesh()
  browser = await launchChromium()
  client = new OpenAI({ baseURL: `${mesh.url}/v1`, apiKey: 'unused' })
  model = (await client.models.list()).data[0]?.id ?? ''
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: mesh.url })
  page = await context.newPage()
  await page.goto(mesh.url)
  // About 50 chunks a second: each reply streams in over a few hundred milliseconds.
  await throttle(page, 20_000)
})

afterAll(async () => {
  await browser?.close()
  await mesh?.close()
})

describe('a conversation', () => {
  const greedy = { maxTokens: 24, temperature: 0 }

  test('three turns with a system prompt: each reply streams, renders, and equals the API text', async () => {
    await setSampling(page, { ...greedy, seed: '' })
    await page.getByLabel('System prompt (optional)').fill(SYSTEM)
    // Records every state the last reply passes through, to see it stream.
    await page.evaluate(`(() => {
      window.__seen = []
      new MutationObserver(() => {
        const last = [...document.querySelectorAll('[data-role="assistant"]')].at(-1)
        if (last) window.__seen.push(last.dataset.state + ':' + last.querySelector('.markdown')?.textContent?.length)
      }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true })
    })()`)
    const expected: Msg[] = [{ role: 'system', content: SYSTEM }]
    for (const [t, text] of TURNS.entries()) {
      await sendMessage(page, text)
      await waitForTurn(page, 2 * t + 1, 'done')
      expected.push({ role: 'user', content: text })
      const reference = await apiReply(expected, greedy)
      expect(reference.length).toBeGreaterThan(0)
      expect(await replyText(page, 2 * t + 1)).toBe(reference)
      expected.push({ role: 'assistant', content: reference })
    }
    const seen = (await page.evaluate('window.__seen')) as string[]
    expect(seen.filter((s) => /^streaming:[1-9]/.test(s)).length).toBeGreaterThan(0)
    // Copy gives the reply's exact text.
    await page.getByRole('button', { name: 'Copy assistant turn 6' }).click()
    expect(await page.evaluate('navigator.clipboard.readText()')).toBe(expected[6]?.content)
    // The Markdown turn rendered as a table, a list and a code block; the HTML in it did not run.
    const md = page.getByTestId('markdown-2')
    expect(await md.locator('table td').allTextContents()).toEqual(['1', '2'])
    expect(await md.locator('li').allTextContents()).toEqual(['first', 'second'])
    expect(await md.locator('pre code').textContent()).toBe('const x = 1\n')
    expect(await page.locator('.messages script, .messages img, .messages [onerror]').count()).toBe(0)
    expect(await page.evaluate('window.__injected')).toBeUndefined()
    await page.screenshot({ path: join(RESULTS, 'chat-conversation.png'), fullPage: true })

    // Reload: the conversation comes back from IndexedDB, turn for turn.
    await page.reload()
    await waitForTurn(page, 5, 'done')
    expect(
      await page
        .getByTestId('conversation-list')
        .getByRole('button', { name: 'Hello there.', exact: true })
        .count(),
    ).toBe(1)
    expect(await history()).toEqual(expected)
  })

  test('regenerate and edit-and-resend give the API text for the new history', async () => {
    // Regenerate the last reply with seeded sampling: the API's text for the same history and seed.
    const seeded = { maxTokens: 24, temperature: 0.9, seed: 7 }
    await setSampling(page, seeded)
    const before = await history()
    await page.getByTestId('message-5').getByRole('button', { name: 'Regenerate' }).click()
    await waitForTurn(page, 5, 'done')
    const regenerated = await apiReply(before.slice(0, 6), seeded)
    expect(await replyText(page, 5)).toBe(regenerated)

    // Edit the second question and resend: later turns go, and the new reply answers the edit.
    await setSampling(page, { ...greedy, seed: '' })
    await page.getByTestId('message-2').getByRole('button', { name: 'Edit' }).click()
    await page.getByLabel('Edit your message').fill('Just one line.')
    await page.getByRole('button', { name: 'Save and resend' }).click()
    await waitForTurn(page, 3, 'done')
    expect(await page.locator('[data-testid^="message-"]').count()).toBe(4)
    const edited = [...before.slice(0, 3), { role: 'user' as const, content: 'Just one line.' }]
    expect(await replyText(page, 3)).toBe(await apiReply(edited, greedy))
  })

  test('stop ends the stream and keeps what arrived', async () => {
    await page.getByRole('button', { name: 'New chat' }).click()
    await setSampling(page, { maxTokens: 400, temperature: 0, seed: '' })
    await sendMessage(page, 'Tell me a long story.')
    // Stop once text has arrived (at 20 kB/s, 400 tokens take several seconds to arrive).
    await page.getByTestId('markdown-1').getByText(/./).first().waitFor()
    await page.getByRole('button', { name: 'Stop' }).click()
    await waitForTurn(page, 1, 'stopped')
    const kept = await replyText(page, 1)
    // A new chat starts without a system prompt.
    const full = await apiReply([{ role: 'user', content: 'Tell me a long story.' }], {
      maxTokens: 400,
      temperature: 0,
    })
    expect(kept.length).toBeGreaterThan(0)
    expect(kept.length).toBeLessThan(full.length)
    expect(full.startsWith(kept)).toBe(true)
    expect(await page.getByTestId('chat-status').textContent()).toMatch(/^stopped after \d+ tokens$/)
    // What arrived is saved as it was: a reload shows the stopped reply unchanged.
    await page.reload()
    await waitForTurn(page, 1, 'stopped')
    expect(await replyText(page, 1)).toBe(kept)
  })
})
