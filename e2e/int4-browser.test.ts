import type { Server } from 'node:http'
import {
  buildStageGraph,
  type ModelConfig,
  stageIo,
  syntheticConfig,
  syntheticStoredWeights,
  withInt4Quantization,
} from '@butterfly/core'
import { until } from '@butterfly/testing/node'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { launchChromium } from './chromium.js'
import { type E2eMesh, startE2eMesh } from './e2e-mesh.js'
import { nodeRun, relativeError, staticServer } from './stage-page.js'

// int4 weights (com.microsoft.MatMulNBits) in real Chromium with the real onnxruntime-web:
// 1. The same int4 stage graph runs on WASM and on WebGPU (SwiftShader here) in a page, and its
//    logits at every step match onnxruntime-node's CPU logits within an explicit tolerance.
// 2. A tab hosts an int4 stage of a mesh (remote download of the .qweight/.scales entries, the
//    stage in the Web Worker) and the mesh's text equals the single-process Node run.

/**
 * max |a − b| / max |b| over a step's logits. WASM is the same fp32 CPU arithmetic as Node;
 * WebGPU leaves room for a hardware GPU's summation order (SwiftShader measures ~1e-6).
 */
const TOLERANCE = { wasm: 1e-4, webgpu: 1e-3 } as const
const FORCED_STEPS = 12
const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]

let browser: Browser

beforeAll(async () => {
  browser = await launchChromium()
})
afterAll(async () => {
  await browser?.close()
})

describe('an int4 stage in onnxruntime-web matches onnxruntime-node', () => {
  const configs: Array<[string, ModelConfig]> = [
    ['tiny (K=172 padded blocks)', withInt4Quantization(syntheticConfig('tiny'))],
    ['small (biases, int4 LM head)', withInt4Quantization(syntheticConfig('small'), { lmHead: true })],
  ]
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

  for (const [label, config] of configs) {
    for (const device of ['wasm', 'webgpu'] as const) {
      test(`${label} on ${device}: every step's logits within ${TOLERANCE[device]} of Node CPU, same top token`, async () => {
        const expected = await nodeRun(config, PROMPT, FORCED_STEPS)
        current = (
          await buildStageGraph(
            { config, layerStart: 0, layerEnd: config.numLayers, emitLogits: true },
            syntheticStoredWeights(config),
          )
        ).bytes
        const io = stageIo(config, 0, config.numLayers)
        const args = {
          device,
          io,
          dims: { heads: config.numKvHeads, headDim: config.headDim, capacity: 64 },
          prompt: PROMPT,
          forced: expected.tokens.slice(0, FORCED_STEPS),
        }
        const { logits, windowIds, gpuKernels } = (await page.evaluate(
          `import('/runner.js').then((m) => m.run(${JSON.stringify(args)}))`,
        )) as { logits: number[][]; windowIds: number[]; gpuKernels: string[] }
        console.log(`int4 ${label} ${device}: kernels on WebGPU: ${gpuKernels.join(', ') || 'none'}`)
        // On WebGPU the int4 matmuls must run on the GPU, not fall back to the CPU provider.
        if (device === 'webgpu') expect(gpuKernels).toContain('MatMulNBits')
        expect(logits).toHaveLength(FORCED_STEPS + 1)
        const errors = logits.map((l, i) => relativeError(l, expected.logits[i] as Float32Array))
        console.log(
          `int4 ${label} ${device}: worst relative logit error ${Math.max(...errors).toExponential(2)}`,
        )
        for (const [i, l] of logits.entries()) {
          expect(errors[i], `step ${i}`).toBeLessThan(TOLERANCE[device])
          expect(l.indexOf(Math.max(...l)), `step ${i}`).toBe(expected.tokens[i])
        }
        // The forced tokens as one merged step, the LM head on every row: the same greedy tokens.
        expect(windowIds).toEqual(expected.tokens.slice(1, FORCED_STEPS + 1))
      })
    }
  }
})

describe('a tab hosts an int4 stage of a mesh', () => {
  let mesh: E2eMesh
  beforeAll(async () => {
    mesh = await startE2eMesh(
      ['--plan-strategy', 'uniform', '--step-timeout-ms', '300000'],
      'synthetic:tiny:int4',
    )
  })
  afterAll(async () => {
    await mesh?.close()
  })

  for (const device of ['wasm', 'webgpu'] as const) {
    test(`on ${device}: the mesh's text equals the single-process int4 run`, async () => {
      const prompt = 'Now is the winter'
      const reference = await mesh.generate(prompt, 24)
      const manifest = (await (await fetch(`${mesh.url}/models/default/manifest.json`)).json()) as {
        weights: string
        tensors: Record<string, { dtype: string }>
      }
      expect(manifest.weights).toBe('int4')
      expect(manifest.tensors['model.layers.3.mlp.down_proj.weight.qweight']?.dtype).toBe('U8')
      const context = await browser.newContext()
      try {
        const tab = await context.newPage()
        await tab.goto(`${mesh.url}/?device=${device}`)
        await tab.getByRole('button', { name: 'Contribute' }).click()
        await tab.getByRole('switch', { name: 'Contribute this GPU' }).check()
        await tab
          .getByTestId('contribute-layers')
          .getByText(/^\d+–\d+$/)
          .waitFor({ timeout: 180_000 })
        const tabId = (await tab.getByTestId('contribute-peer').textContent()) ?? ''
        await until<{ meshes: Array<{ ready: boolean; plan: { stages: Array<{ peerId: string }> } }> }>(
          `${mesh.url}/health`,
          (h) => h.meshes[0]?.ready === true && h.meshes[0].plan.stages.some((s) => s.peerId === tabId),
          180_000,
        )
        const res = await fetch(`${mesh.url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'default', prompt, max_tokens: 24, temperature: 0 }),
        })
        const body = (await res.json()) as { choices: Array<{ text: string }> }
        expect(body.choices[0]?.text).toBe(reference)
        // The tab's view polls its counters every 500 ms: wait for the poll that shows the steps.
        await tab
          .getByTestId('contribute-steps')
          .getByText(/^[1-9]\d*$/)
          .waitFor({ timeout: 10_000 })
        expect(Number(await tab.getByTestId('contribute-steps').textContent())).toBeGreaterThan(0)
        expect(await tab.getByTestId('contribute-status').textContent()).toContain(
          device === 'webgpu' ? 'WebGPU' : 'WASM',
        )
        await tab.close()
      } finally {
        await context.close()
      }
    }, 360_000) // under a full parallel suite a tab's download, build and first steps take minutes
  }
})
