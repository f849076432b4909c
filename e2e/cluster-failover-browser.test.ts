import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  aclUrl,
  butterflyAclArgs,
  type Proc,
  type RedisServer,
  referenceText,
  SERVER_BIN,
  start,
  startRedis,
  startTcpProxy,
  type TcpProxy,
  until,
  WORKER_BIN,
} from '@butterfly/testing/node'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { launchChromium } from './chromium.js'

// Two `butterfly-server --redis` processes share one mesh behind a load balancer (a TCP proxy:
// server A, then B). A tab opened at the balancer's origin contributes a stage next to a Node
// worker. A is SIGKILLed: the tab sees its server drop, rejoins the same origin (now B) with the
// same key, so the same peer id, loads its layers from the browser's cache without fetching a
// tensor again, and B serves the single-process text through it.
const PROMPT = 'To be, or not'
const MAX_TOKENS = 16
const PW = 'cluster-browser-password'
const WEIGHTS = '/models/default/model.safetensors'

interface Health {
  meshes: Array<{
    ready: boolean
    peers: Array<{ id: string; backend: string }>
    plan: { version: number; stages: Array<{ peerId: string; start: number; end: number }> }
  }>
}
let cache: string
let redis: RedisServer
let proxy: TcpProxy
let browser: Browser
const procs: Proc[] = []

const env = () => ({
  BUTTERFLY_CACHE_DIR: cache,
  BUTTERFLY_REDIS_URL: aclUrl(redis.url, PW),
  BUTTERFLY_CLUSTER_SECRET: 'cluster-browser-secret',
})
async function server(): Promise<{ proc: Proc; url: string; port: number }> {
  const args = ['--port', '0', '--model', 'synthetic:tiny', '--plan-strategy', 'uniform']
  const proc = start(SERVER_BIN, args, env())
  procs.push(proc)
  const url = (await proc.waitFor(/listening on (http:\/\/\S+)/))[1] as string
  return { proc, url, port: Number(new URL(url).port) }
}

/** A greedy completion from `url`: its text after a 200, else the status and body (90 s at most). */
async function complete(url: string): Promise<string> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: PROMPT, max_tokens: MAX_TOKENS, temperature: 0 }),
    signal: AbortSignal.timeout(90_000),
  }).catch((err: Error) => err)
  if (res instanceof Error) return `no answer: ${res.message}`
  const body = await res.text()
  if (res.status !== 200) return `HTTP ${res.status}: ${body}`
  return (JSON.parse(body) as { choices: Array<{ text: string }> }).choices[0]?.text ?? ''
}

/** The mesh on `url` is ready with two stages, one of them held by `tab` (any wasm peer if undefined). */
const tabServing = (tab?: string) => (h: Health) => {
  const m = h.meshes[0]
  const id = tab ?? m?.peers.find((p) => p.backend === 'wasm')?.id
  return m?.ready === true && m.plan.stages.length === 2 && m.plan.stages.some((s) => s.peerId === id)
}

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'bf-e2e-cluster-'))
  redis = await startRedis({ args: butterflyAclArgs(PW) })
  browser = await launchChromium()
})

afterAll(async () => {
  await browser?.close()
  await Promise.all(procs.splice(0).map((p) => p.stop('SIGKILL')))
  await proxy?.close()
  await redis?.stop()
  await rm(cache, { recursive: true, force: true })
})

describe('a contributing tab behind a load balancer over two servers', () => {
  test('fails over from a killed server with the same peer id and no tensor downloaded again', async () => {
    const a = await server()
    const b = await server()
    const worker = start(
      WORKER_BIN,
      ['join', '--server', `${a.url},${b.url}`, '--device', 'cpu', '--name', 'node-worker'],
      { ...env(), BUTTERFLY_IDENTITY: join(cache, 'worker.identity.json') },
    )
    procs.push(worker)
    const workerId = (await worker.waitFor(/joined mesh default as (\S+) through (\S+)/))[1] as string
    await until<Health>(`${b.url}/health`, (h) => h.meshes[0]?.ready === true)
    proxy = await startTcpProxy([
      { host: '127.0.0.1', port: a.port },
      { host: '127.0.0.1', port: b.port },
    ])
    const reference = await referenceText('synthetic:tiny', PROMPT, MAX_TOKENS, env())

    // Every read of a tensor's bytes from the network, and every phase the view shows.
    const manifest = (await (await fetch(`${b.url}/models/default/manifest.json`)).json()) as {
      tensors: Record<string, { begin: number }>
    }
    const tensorStarts = new Set(Object.values(manifest.tensors).map((t) => t.begin))
    const tensorReads: Array<{ url: string; start: number }> = []
    const tab: Page = await browser.newPage()
    tab.on('request', (req) => {
      const start = Number(/^bytes=(\d+)-/.exec(req.headers().range ?? '')?.[1])
      if (req.url().endsWith(WEIGHTS) && tensorStarts.has(start)) tensorReads.push({ url: req.url(), start })
    })
    await tab.goto(`${proxy.url}/?device=wasm`)
    await tab.evaluate(`(() => {
      window.__phases = []
      new MutationObserver(() => {
        const phase = document.querySelector('[data-testid="contribute-phase"]')?.dataset.phase
        if (phase && window.__phases.at(-1) !== phase) window.__phases.push(phase)
      }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true })
    })()`)
    await tab.getByRole('button', { name: 'Contribute' }).click()
    await tab.getByRole('switch', { name: 'Contribute this GPU' }).check()
    const phase = tab.getByTestId('contribute-phase')
    await phase.getByText(/^Serving layers/).waitFor({ timeout: 90_000 })

    // Through A, seen by B: the tab holds a stage next to the worker and B's text is exact.
    const before = await until<Health>(`${b.url}/health`, tabServing(), 90_000)
    const tabId = before.meshes[0]?.peers.find((p) => p.backend === 'wasm')?.id as string
    expect(before.meshes[0]?.peers.map((p) => p.id).sort()).toEqual([tabId, workerId].sort())
    expect(await tab.getByTestId('contribute-peer').textContent()).toBe(tabId)
    const layers = before.meshes[0]?.plan.stages.find((s) => s.peerId === tabId)
    const weights = tab.getByTestId('contribute-weights')
    const firstLoad = /^(\d+) tensors downloaded, 0 from this browser's cache$/.exec(
      (await weights.textContent()) ?? '',
    )
    const tensors = Number(firstLoad?.[1])
    expect(tensors).toBeGreaterThan(0)
    expect(tensorReads.length).toBe(tensors)
    expect(tensorReads.every((r) => r.url === `${proxy.url}${WEIGHTS}`)).toBe(true)
    expect(await complete(b.url)).toBe(reference)

    // A dies; the balancer's next connection goes to B, and so does the tab's rejoin.
    const connectionsBefore = proxy.connections()
    const phasesBefore = ((await tab.evaluate('window.__phases')) as string[]).length
    tensorReads.length = 0
    await a.proc.stop('SIGKILL')
    await worker.waitFor(new RegExp(`rejoined the mesh through ${b.url.replace(/[.]/g, '\\.')}`))
    await tab.waitForFunction(
      `window.__phases.slice(${phasesBefore}).includes('reconnecting') && window.__phases.at(-1) === 'serving'`,
      undefined,
      { timeout: 90_000 },
    )
    const steps = async () => Number(await tab.getByTestId('contribute-steps').textContent())
    const stepsOnRejoin = await steps()
    const after = await until<Health>(`${b.url}/health`, tabServing(tabId), 90_000)
    expect(proxy.connections()).toBeGreaterThan(connectionsBefore)

    // The same peer, the same layers, every tensor from the browser's cache, none from the network.
    expect(after.meshes[0]?.peers.map((p) => p.id).sort()).toEqual([tabId, workerId].sort())
    expect(after.meshes[0]?.peers.find((p) => p.id === tabId)?.backend).toBe('wasm')
    expect(after.meshes[0]?.plan.stages.find((s) => s.peerId === tabId)).toEqual(layers)
    expect(await tab.getByTestId('contribute-peer').textContent()).toBe(tabId)
    await weights
      .getByText(`0 tensors downloaded, ${tensors} from this browser's cache`, { exact: true })
      .waitFor({ timeout: 30_000 })
    expect(tensorReads).toEqual([])

    // B, directly and through the balancer, gives the single-process text through the tab.
    expect(await complete(b.url)).toBe(reference)
    expect(await complete(proxy.url)).toBe(reference)
    // The rejoined tab computed steps of those completions.
    await tab.waitForFunction(
      `Number(document.querySelector('[data-testid="contribute-steps"]').textContent) > ${stepsOnRejoin}`,
      undefined,
      { timeout: 10_000 },
    )
    expect(await steps()).toBeGreaterThan(stepsOnRejoin)
    expect(worker.child.exitCode).toBeNull()
    await tab.close()
  }, 240_000)
})
