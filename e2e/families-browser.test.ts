import type { Server } from 'node:http'
import {
  buildStageGraph,
  layerAttention,
  type ModelConfig,
  stageIo,
  syntheticStoredWeights,
} from '@butterfly/core'
import { FAMILY_CONFIGS } from '@butterfly/testing'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { launchChromium } from './chromium.js'
import { nodeRun, relativeError, staticServer } from './stage-page.js'

// Every family's stage graph (Split, per-head SimplifiedLayerNormalization, partial-rotary
// Split/Concat around RotaryEmbedding, GQA's local_window_size and scale, GeGLU from Tanh) in
// real Chromium with the real onnxruntime-web, on WASM and on WebGPU (SwiftShader here): its
// logits at every step match onnxruntime-node's CPU logits. The prompt plus forced steps is
// longer than Gemma 3's and Mistral's windows, so the window semantics of each EP are pinned.
// The forced tokens replayed as one merged step with the LM head on every row (a replica
// answering a window) give, row by row, the greedy tokens of the single steps.

/** As in int4-browser.test.ts: WASM is Node's fp32 CPU arithmetic; WebGPU leaves room for a GPU. */
const TOLERANCE = { wasm: 1e-4, webgpu: 1e-3 } as const
const FORCED_STEPS = 12
const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120, 7, 9]

let browser: Browser
beforeAll(async () => {
  browser = await launchChromium()
})
afterAll(async () => {
  await browser?.close()
})

describe('every family stage in onnxruntime-web matches onnxruntime-node', () => {
  let current: Uint8Array = new Uint8Array()
  let site: { url: string; server: Server }
  let page: Page
  beforeAll(async () => {
    site = await staticServer(() => current)
    page = await browser.newPage()
    await page.goto(`${site.url}/`)
  })
  afterAll(async () => {
    await page?.close()
    await new Promise((resolve) => site?.server.close(resolve))
  })

  for (const [family, config] of Object.entries(FAMILY_CONFIGS) as Array<[string, ModelConfig]>) {
    for (const device of ['wasm', 'webgpu'] as const) {
      test(`${family} on ${device}: every step's logits within ${TOLERANCE[device]} of Node CPU`, async () => {
        const expected = await nodeRun(config, PROMPT, FORCED_STEPS)
        current = (
          await buildStageGraph(
            { config, layerStart: 0, layerEnd: config.numLayers, emitLogits: true },
            syntheticStoredWeights(config),
          )
        ).bytes
        const args = {
          device,
          io: stageIo(config, 0, config.numLayers),
          dims: { heads: config.numKvHeads, headDim: config.headDim, capacity: 64 },
          prompt: PROMPT,
          forced: expected.tokens.slice(0, FORCED_STEPS),
        }
        const { logits, windowIds, gpuKernels } = (await page.evaluate(
          `import('/runner.js').then((m) => m.run(${JSON.stringify(args)}))`,
        )) as { logits: number[][]; windowIds: number[]; gpuKernels: string[] }
        const errors = logits.map((l, i) => relativeError(l, expected.logits[i] as Float32Array))
        console.log(
          `${family} ${device}: worst relative logit error ${Math.max(...errors).toExponential(2)}` +
            (device === 'webgpu' ? `; kernels on WebGPU: ${gpuKernels.join(', ')}` : ''),
        )
        // Attention must run on the GPU: GQA for full layers, Softmax in the sliding layers' own.
        if (device === 'webgpu') {
          const kinds = Array.from({ length: config.numLayers }, (_, l) => layerAttention(config, l))
          if (kinds.includes('full')) expect(gpuKernels).toContain('GroupQueryAttention')
          if (kinds.includes('sliding')) expect(gpuKernels).toContain('Softmax')
        }
        expect(logits).toHaveLength(FORCED_STEPS + 1)
        for (const [i, l] of logits.entries()) {
          expect(errors[i], `step ${i}`).toBeLessThan(TOLERANCE[device])
          expect(l.indexOf(Math.max(...l)), `step ${i}`).toBe(expected.tokens[i])
        }
        expect(windowIds).toEqual(expected.tokens.slice(1, FORCED_STEPS + 1))
      })
    }
  }
})
