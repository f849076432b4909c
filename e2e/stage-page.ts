import { readFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type ModelConfig, type StageSession, syntheticStoredWeights } from '@butterfly/core'
import { createNodeBackend } from '@butterfly/node-platform'

// Shared by the suites that run one stage graph in a page (fixtures/ort-stage-runner.js,
// fixtures/ort-batch-runner.js) and compare it with onnxruntime-node: int4-browser.test.ts,
// families-browser.test.ts, batching-browser.test.ts.

const ORT_DIST = dirname(createRequire(import.meta.url).resolve('onnxruntime-web'))
const RUNNER = fileURLToPath(new URL('./fixtures/ort-stage-runner.js', import.meta.url))
const BATCH_RUNNER = fileURLToPath(new URL('./fixtures/ort-batch-runner.js', import.meta.url))

/** Serves the blank page, the runner, onnxruntime-web's dist and the current graph on 127.0.0.1. */
export async function staticServer(graph: () => Uint8Array): Promise<{ url: string; server: Server }> {
  const types: Record<string, string> = {
    '.mjs': 'text/javascript',
    '.js': 'text/javascript',
    '.wasm': 'application/wasm',
  }
  const server = createServer(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    try {
      if (path === '/')
        return res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>stage</title>')
      if (path === '/runner.js')
        return res.writeHead(200, { 'content-type': types['.js'] }).end(await readFile(RUNNER))
      if (path === '/batch-runner.js')
        return res.writeHead(200, { 'content-type': types['.js'] }).end(await readFile(BATCH_RUNNER))
      if (path === '/stage.onnx')
        return res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(graph())
      if (path.startsWith('/ort/')) {
        const file = basename(path)
        const ext = file.slice(file.lastIndexOf('.'))
        return res
          .writeHead(200, { 'content-type': types[ext] ?? 'application/octet-stream' })
          .end(await readFile(join(ORT_DIST, file)))
      }
    } catch {
      // fall through to 404
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

/** Node CPU (the engine's own OrtStage): greedy tokens and each step's logits. */
export async function nodeRun(
  config: ModelConfig,
  prompt: readonly number[],
  steps: number,
): Promise<{ tokens: number[]; logits: Float32Array[] }> {
  const stage: StageSession = await createNodeBackend({ threads: 1 }).createStage(
    { config, layerStart: 0, layerEnd: config.numLayers, emitLogits: true },
    syntheticStoredWeights(config),
  )
  try {
    const logits: Float32Array[] = []
    const tokens: number[] = []
    let input = [...prompt]
    for (let i = 0; i <= steps; i++) {
      const out = await stage.step('g', {
        tokens: input,
        seqLen: input.length,
        startPos: i === 0 ? 0 : prompt.length + i - 1,
      })
      const l = out.logits as Float32Array
      logits.push(l)
      const next = l.indexOf(Math.max(...l))
      tokens.push(next)
      input = [next]
    }
    return { tokens, logits }
  } finally {
    await stage.dispose()
  }
}

export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let diff = 0
  let scale = 0
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs((actual[i] as number) - (expected[i] as number)))
    scale = Math.max(scale, Math.abs(expected[i] as number))
  }
  return actual.length === expected.length ? diff / scale : Number.POSITIVE_INFINITY
}
