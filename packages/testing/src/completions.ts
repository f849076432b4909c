import { expect } from 'vitest'
import { start, WORKER_BIN } from './processes.js'

/**
 * `butterfly-worker generate` in one process: the greedy text a mesh must reproduce exactly.
 * `env` carries BUTTERFLY_CACHE_DIR (where `model`, e.g. synthetic:tiny, is written once).
 */
export async function referenceText(
  model: string,
  prompt: string,
  maxTokens: number,
  env: Record<string, string>,
): Promise<string> {
  const local = start(
    WORKER_BIN,
    ['generate', '--model', model, '--prompt', prompt, '--max-tokens', String(maxTokens)],
    env,
  )
  expect(await local.exited).toBe(0)
  const text = local.output().replace(/\n$/, '')
  expect(text.length).toBeGreaterThan(0)
  return text
}

/** A greedy /v1/completions from the server at `url` (its first model); the text, after a 200. */
export async function completionText(url: string, prompt: string, maxTokens: number): Promise<string> {
  const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: Array<{ id: string }> }
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: models.data[0]?.id, prompt, max_tokens: maxTokens, temperature: 0 }),
  })
  expect(res.status, await res.clone().text()).toBe(200)
  return ((await res.json()) as { choices: Array<{ text: string }> }).choices[0]?.text ?? ''
}
