import { generate, type Pipeline, uniformPartition, type StageSession } from '@butterfly/core'
import { createNodeBackend } from '@butterfly/node-platform'
import { test } from 'vitest'
import { loadModel } from '../../src/models/model-store.js'

test('inproc', async () => {
  const m: any = await loadModel(new URL('../../../../models/shakespeare', import.meta.url).pathname)
  const config = m.config
  const backend = createNodeBackend({})
  const stages: StageSession[] = []
  for (const r of uniformPartition(config.numLayers, Number(process.env.STAGES ?? 1))) stages.push(await backend.createStage({ config, layerStart: r.start, layerEnd: r.end }, m.weights))
  const p: Pipeline = { stages, maxContext: config.maxContext }
  const run = async (i: number) => { let n = 0; for await (const _ of generate(p, { promptIds: Array.from({ length: 12 + (i % 20) }, (_, j) => 40 + ((i + j) % 50)), maxTokens: 32, sampling: { temperature: 0 } })) n++; return n }
  await run(0)
  let t = performance.now(); let n = 0
  for (let i = 0; i < 5; i++) n += await run(i)
  const one = n / ((performance.now() - t) / 1000)
  for (const N of [8, 64]) { (globalThis as any).DEBUG_BATCH = []; (globalThis as any).DEBUG_RUNS = []
    const before = stages.map((s) => s.batchStats!)
    t = performance.now()
    const ns = await Promise.all(Array.from({ length: N }, (_, i) => run(i)))
    const rate = ns.reduce((a, b) => a + b, 0) / ((performance.now() - t) / 1000)
    console.log((globalThis as any).DEBUG_RUNS.join(" ")); console.log(`one ${one.toFixed(0)} tok/s; ${N} concurrent ${rate.toFixed(0)} tok/s = ${(rate / one).toFixed(2)}x`, stages.map((s, i) => { const a = s.batchStats!, b = before[i]!; return `runs ${a.runs - b.runs} steps ${a.steps - b.steps} widest ${a.widest}` }))
  }
}, 300_000)
