#!/usr/bin/env node
// `npm run bench:real`: a real-size model (synthetic weights with a published model's exact shapes)
// served by a mesh of two butterfly-worker processes and, unless --tab none, one Chromium tab
// contributing a stage on onnxruntime-web. Prints each peer's layers, load time and peak memory,
// then greedy decode tokens/s through the OpenAI API (median over rounds).
//
//   node e2e/bench/real-size-bench.mjs [--model synthetic:llama-3.2-1b:int4] [--tab wasm|webgpu|none]
//                                      [--tokens 16] [--rounds 3] [--tab-memory GiB]
//
// Plain JavaScript over the built programs (run `npm run build` first) so it needs no test runner.
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { generate } from '@butterfly/core'
import { createLocalPipeline, createNodeBackend, loadModel, resolveModelDir } from '@butterfly/node-platform'
import { chromium } from 'playwright-core'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SERVER_BIN = join(ROOT, 'apps/signal-server/bin/butterfly-server.js')
const WORKER_BIN = join(ROOT, 'packages/node-worker/bin/butterfly-worker.js')

const { values } = parseArgs({
  options: {
    // BUTTERFLY_BENCH_QUICK=1 (as the other benches): a tiny model, to check the bench itself.
    model: {
      type: 'string',
      default: process.env.BUTTERFLY_BENCH_QUICK === '1' ? 'synthetic:tiny' : 'synthetic:llama-3.2-1b:int4',
    },
    tab: { type: 'string', default: 'wasm' },
    tokens: { type: 'string', default: '16' },
    // What the tab reports as its memory budget: the first and last stages of a 1B model carry a
    // ~1 GB embedding table, and the uniform plan may give the tab either.
    'tab-memory': { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
  },
})
const tokens = Number(values.tokens)
const rounds = Number(values.rounds)
if (!['wasm', 'webgpu', 'none'].includes(values.tab)) throw new Error('--tab must be wasm, webgpu or none')
if (!(Number.isInteger(tokens) && tokens >= 2) || !(Number.isInteger(rounds) && rounds >= 1)) {
  throw new Error('--tokens must be an integer >= 2 and --rounds >= 1')
}

/** Peak and current resident memory of a process, from /proc (Linux), in MiB. */
function memoryOf(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (key) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? Number.NaN)
    return { peak: kb('VmHWM') / 1024, now: kb('VmRSS') / 1024 }
  } catch {
    return { peak: Number.NaN, now: Number.NaN }
  }
}

/** Chromium's renderer processes (the tab and its Web Worker live in one): summed RSS, MiB. */
function rendererMemory() {
  let now = 0
  let peak = 0
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmdline = ''
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    } catch {
      continue
    }
    if (!cmdline.includes('--type=renderer')) continue
    const m = memoryOf(pid)
    if (Number.isFinite(m.now)) now += m.now
    if (Number.isFinite(m.peak)) peak += m.peak
  }
  return { peak, now }
}

function startProc(bin, args, env) {
  const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env } })
  let output = ''
  const waiters = []
  const onData = (chunk) => {
    output += chunk.toString()
    for (const w of [...waiters]) {
      const m = w.re.exec(output)
      if (m) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(m)
      }
    }
  }
  child.stdout.on('data', onData)
  child.stderr.on('data', onData)
  return {
    child,
    output: () => output,
    waitFor(re) {
      const m = re.exec(output)
      if (m) return Promise.resolve(m)
      return new Promise((resolve, reject) => {
        waiters.push({ re, resolve })
        child.once('exit', (code) => reject(new Error(`${bin} exited (${code}) before ${re}:\n${output}`)))
      })
    },
    stop() {
      if (child.exitCode !== null) return Promise.resolve()
      return new Promise((resolve) => {
        child.once('exit', resolve)
        child.kill('SIGTERM')
      })
    },
  }
}

async function health(url) {
  return (await fetch(`${url}/health`)).json()
}

/** Polls /health until `ok` holds; the bench has no event to wait on across processes. */
async function untilHealth(url, ok, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const h = await health(url)
    if (ok(h)) return h
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for the mesh: ${JSON.stringify(h.meshes[0]?.plan)}`)
    await new Promise((r) => setTimeout(r, 250))
  }
}

/** One streamed greedy completion: [prefill s, decode tokens/s after the first token]. */
async function timeCompletion(url, prompt) {
  const start = performance.now()
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: tokens, temperature: 0, stream: true }),
  })
  if (res.status !== 200) throw new Error(`completion failed: ${res.status} ${await res.text()}`)
  let first = 0
  let count = 0
  const decoder = new TextDecoder()
  let buffer = ''
  for await (const bytes of res.body) {
    buffer += decoder.decode(bytes, { stream: true })
    for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
      const data = buffer.slice(6, end)
      buffer = buffer.slice(end + 2)
      if (data === '[DONE]') continue
      const usage = JSON.parse(data).usage
      if (usage?.completion_tokens) count = usage.completion_tokens
      else if (count++ === 0) first = performance.now()
    }
  }
  const end = performance.now()
  return { prefillSeconds: (first - start) / 1000, decode: (count - 1) / ((end - first) / 1000), count }
}

/** The same greedy decode in this process, one stage on onnxruntime-node: the baseline. */
async function timeSingle(pipeline, promptIds) {
  const start = performance.now()
  let first = 0
  let count = 0
  for await (const _ of generate(pipeline, { promptIds, maxTokens: tokens, sampling: { temperature: 0 } })) {
    if (count++ === 0) first = performance.now()
  }
  const end = performance.now()
  return { prefillSeconds: (first - start) / 1000, decode: (count - 1) / ((end - first) / 1000), count }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

let stopping = false

async function main() {
  const cache = process.env.BUTTERFLY_CACHE_DIR ?? (await mkdtemp(join(tmpdir(), 'bf-real-')))
  const env = { BUTTERFLY_CACHE_DIR: cache }
  const peers = values.tab === 'none' ? 2 : 3
  console.log(
    `# Butterfly real-size bench: ${values.model}, ${peers} peers (2 Node CPU workers${values.tab === 'none' ? '' : ` + a Chromium tab on ${values.tab}`})`,
  )
  console.log(
    `# ${cpus()[0]?.model ?? 'cpu'} x ${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`,
  )
  const t0 = performance.now()
  const server = startProc(
    SERVER_BIN,
    // A worker building a 1B stage on a loaded 2-core box can go quiet for tens of seconds;
    // heartbeats every 30 s (dropped after 90 s) keep the server from dropping it meanwhile.
    [
      '--port',
      '0',
      '--model',
      values.model,
      '--plan-strategy',
      'uniform',
      '--step-timeout-ms',
      '600000',
      '--heartbeat-ms',
      '30000',
    ],
    env,
  )
  const procs = [server]
  let browser
  try {
    const url = (await server.waitFor(/listening on (http:\/\/\S+)/))[1]
    console.log(`server up (model materialised) in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    const workers = [0, 1].map((i) =>
      startProc(WORKER_BIN, ['join', '--server', url, '--device', 'cpu', '--name', `node-${i}`], {
        ...env,
        BUTTERFLY_IDENTITY: join(cache, `worker-${i}.identity.json`),
      }),
    )
    procs.push(...workers)
    // A worker that dies (out of memory, a bad plan) must end the bench, not leave it polling.
    for (const w of workers) {
      w.child.once('exit', (code) => {
        if (!stopping) {
          console.error(`a worker exited (${code}):\n${w.output()}`)
          process.exit(1)
        }
      })
    }
    const loadStart = performance.now()
    let tab
    if (values.tab !== 'none') {
      const executablePath = [
        process.env.BUTTERFLY_CHROMIUM,
        '/usr/bin/chromium',
        '/usr/bin/chromium-browser',
      ].find((p) => p !== undefined && existsSync(p))
      if (!executablePath) throw new Error('no Chromium: run node e2e/scripts/ensure-chromium.mjs')
      const { CHROMIUM_ARGS } = await import('../chromium-args.mjs')
      browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS })
      tab = await browser.newPage()
      await tab.goto(`${url}/?device=${values.tab}`)
      await tab.getByRole('button', { name: 'Contribute' }).click()
      await tab.getByLabel('Memory budget (GiB)').fill(values['tab-memory'])
      await tab.getByRole('switch', { name: 'Contribute this GPU' }).check()
    }
    const h = await untilHealth(
      url,
      (h) => h.meshes[0]?.ready === true && h.meshes[0].plan.stages.length === peers,
      1_800_000,
    )
    const loadSeconds = (performance.now() - loadStart) / 1000
    const mesh = h.meshes[0]
    console.log(
      `mesh ready (every peer joined, benchmarked, downloaded and loaded its layers) in ${loadSeconds.toFixed(1)} s`,
    )
    const rows = [['peer', 'backend', 'layers', 'load s', 'peak RSS MiB', 'RSS MiB']]
    for (const stage of mesh.plan.stages) {
      const peer = mesh.peers.find((p) => p.id === stage.peerId)
      const name = peer?.name ?? stage.peerId
      const index = /^node-(\d)$/.exec(name)?.[1]
      const worker = index === undefined ? undefined : workers[Number(index)]
      const mem = worker ? memoryOf(worker.child.pid) : rendererMemory()
      const loaded = worker
        ? /serving layers .* in (\d+) ms/.exec(worker.output())?.[1]
        : await tab
            ?.getByTestId('contribute-load-ms')
            .textContent({ timeout: 1000 })
            .catch(() => undefined)
      rows.push([
        name,
        peer?.backend ?? '?',
        `${stage.start}-${stage.end}`,
        loaded ? (Number(loaded) / 1000).toFixed(1) : `<= ${loadSeconds.toFixed(1)}`,
        mem.peak.toFixed(0),
        mem.now.toFixed(0),
      ])
    }
    const sm = memoryOf(server.child.pid)
    rows.push(['server (coordinator)', '-', '-', '-', sm.peak.toFixed(0), sm.now.toFixed(0)])
    for (const r of rows) console.log(r.join('\t'))

    const prompt = 'The quick brown fox jumps over the lazy dog. Once upon a time'
    // The baseline: the whole model as one stage in this process, timed round-robin with the
    // mesh (never at the same time) so both see the same machine.
    const single = await loadModel(await resolveModelDir(values.model, cache))
    const pipeline = await createLocalPipeline(single, createNodeBackend({}), { stages: 1 })
    const promptIds = single.tokenizer.encode(prompt, { addBos: true })
    try {
      await timeCompletion(url, prompt) // warm-up: first-step session setup on every peer
      await timeSingle(pipeline, promptIds)
      const runs = []
      const singles = []
      for (let i = 0; i < rounds; i++) {
        runs.push(await timeCompletion(url, prompt))
        singles.push(await timeSingle(pipeline, promptIds))
      }
      const meshTps = median(runs.map((r) => r.decode))
      const singleTps = median(singles.map((r) => r.decode))
      console.log(['', 'decode tok/s', 'prompt to first token s', 'runs'].join('\t'))
      console.log(
        [
          'mesh',
          meshTps.toFixed(2),
          median(runs.map((r) => r.prefillSeconds)).toFixed(2),
          runs.map((r) => r.decode.toFixed(2)).join(', '),
        ].join('\t'),
      )
      console.log(
        [
          'one process',
          singleTps.toFixed(2),
          median(singles.map((r) => r.prefillSeconds)).toFixed(2),
          singles.map((r) => r.decode.toFixed(2)).join(', '),
        ].join('\t'),
      )
      console.log(
        `mesh / one process (decode, medians of ${rounds} rounds of ${tokens} greedy tokens): ${(meshTps / singleTps).toFixed(3)}`,
      )
    } finally {
      await pipeline.dispose()
      await single.close()
    }
  } finally {
    stopping = true
    await browser?.close()
    await Promise.all(procs.map((p) => p.stop()))
    if (!process.env.BUTTERFLY_CACHE_DIR) await rm(cache, { recursive: true, force: true })
  }
}

await main()
process.exit(0)
