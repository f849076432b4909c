import type { Server } from 'node:http'
import { buildStageGraph, type ModelConfig, stageIo, syntheticStoredWeights } from '@butterfly/core'
import { FAMILY_CONFIGS } from '@butterfly/testing'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { launchChromium } from './chromium.js'
import { nodeRun, relativeError, staticServer } from './stage-page.js'

// Continuous batching in real Chromium with the real onnxruntime-web: generations decoding as one
// batch (each row its own KV slot, position and seqlens_k), and prompts of one length prefilled as
// one batch (first chunks, then later chunks with a past), compute what each computes alone.
// On WASM (the same fp32 CPU kernels as Node) that is bit for bit; WebGPU (SwiftShader here)
// must give the same greedy tokens, with top-k values within its 1e-3 and reported when not
// bit-identical. Both must also give Node CPU's greedy tokens.

const STEPS = 8
// Two pairs of one length each, which prefill together (fixtures/ort-batch-runner.js), and a
// prompt alone between them.
const PROMPTS = [[1, 40, 75, 80, 90], [9, 8, 7, 6, 5], [17], [33, 34, 35, 36], [60, 61, 62, 63]]

interface Step {
  values: number[]
  next: number
}

let browser: Browser
let site: { url: string; server: Server }
let page: Page
let current: Uint8Array = new Uint8Array()
beforeAll(async () => {
  browser = await launchChromium()
  site = await staticServer(() => current)
  page = await browser.newPage()
  await page.goto(`${site.url}/`)
})
afterAll(async () => {
  await page?.close()
  await new Promise((resolve) => site?.server.close(resolve))
  await browser?.close()
})

describe('batched decode in onnxruntime-web equals each generation alone', () => {
  for (const family of ['llama3', 'qwen3'] as const) {
    const config = FAMILY_CONFIGS[family] as ModelConfig
    for (const device of ['wasm', 'webgpu'] as const) {
      test(`${family} on ${device}: ${PROMPTS.length} generations batched`, async () => {
        const weights = syntheticStoredWeights(config)
        current = (await buildStageGraph({ config, layerStart: 0, layerEnd: config.numLayers }, weights))
          .bytes
        const args = {
          device,
          io: stageIo(config, 0, config.numLayers),
          dims: { heads: config.numKvHeads, headDim: config.headDim, capacity: 64 },
          prompts: PROMPTS,
          steps: STEPS,
        }
        const { alone, together } = (await page.evaluate(
          `import('/batch-runner.js').then((m) => m.run(${JSON.stringify(args)}))`,
        )) as { alone: Step[][]; together: Step[][] }
        expect(together).toHaveLength(PROMPTS.length)
        let worst = 0
        let identical = true
        for (const [i, prompt] of PROMPTS.entries()) {
          const a = alone[i] as Step[]
          const t = together[i] as Step[]
          expect(
            t.map((s) => s.next),
            `generation ${i}`,
          ).toEqual(a.map((s) => s.next))
          const node = await nodeRun(config, prompt, STEPS)
          expect(
            a.map((s) => s.next),
            `generation ${i} vs Node CPU`,
          ).toEqual(node.tokens)
          for (const [j, s] of t.entries()) {
            const want = (a[j] as Step).values
            worst = Math.max(worst, relativeError(s.values, want))
            identical &&= s.values.every((v, k) => v === want[k])
          }
        }
        console.log(
          `${family} ${device}: batched vs alone ${identical ? 'bit-identical' : `worst relative ${worst.toExponential(2)}`}`,
        )
        if (device === 'wasm') expect(identical).toBe(true)
        else expect(worst).toBeLessThan(1e-3)
      })
    }
  }
})
