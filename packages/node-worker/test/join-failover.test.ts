import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Proc, SERVER_BIN, start, until, WORKER_BIN } from '@butterfly/testing/node'
import { afterAll, beforeAll, expect, test } from 'vitest'

// `join --server A,B`: when A goes away (killed, no goodbye), the worker rejoins through B with
// the same identity and keeps the layers it holds, because B's plan gives it the same layers of
// the same files: nothing is downloaded or rebuilt (the stage cache is off, so a reload would
// have to fetch). B then serves completions through it, with the tokens of a local run.

const PROMPT = 'To be, or not'
const MAX_TOKENS = 12
interface Health {
  meshes: Array<{ ready: boolean; plan: { stages: Array<{ peerId: string; start: number; end: number }> } }>
}
let cache: string
const procs: Proc[] = []

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'bf-join-failover-'))
})
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')))
  await rm(cache, { recursive: true, force: true })
})

async function server(): Promise<{ proc: Proc; url: string }> {
  const proc = start(SERVER_BIN, ['--port', '0', '--model', 'synthetic:tiny'], { BUTTERFLY_CACHE_DIR: cache })
  procs.push(proc)
  return { proc, url: (await proc.waitFor(/listening on (http:\/\/\S+)/))[1] as string }
}

async function complete(url: string): Promise<string> {
  const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: Array<{ id: string }> }
  const model = models.data[0]?.id
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt: PROMPT, max_tokens: MAX_TOKENS, temperature: 0 }),
  })
  expect(res.status, await res.clone().text()).toBe(200)
  return ((await res.json()) as { choices: Array<{ text: string }> }).choices[0]?.text ?? ''
}

test('a worker whose server dies rejoins through the next one, keeps its stage, and serves exact completions', async () => {
  const a = await server()
  const b = await server()
  const worker = start(
    WORKER_BIN,
    ['join', '--server', `${a.url},${b.url}`, '--device', 'cpu', '--name', 'w', '--stage-cache', 'off'],
    { BUTTERFLY_CACHE_DIR: cache, BUTTERFLY_IDENTITY: join(cache, 'w.identity.json') },
  )
  procs.push(worker)
  const onA = await until<Health>(`${a.url}/health`, (h) => h.meshes[0]?.ready === true)
  const stageOnA = onA.meshes[0]?.plan.stages.find((s) => s.peerId !== 'local')
  const local = start(
    WORKER_BIN,
    ['generate', '--model', 'synthetic:tiny', '--prompt', PROMPT, '--max-tokens', String(MAX_TOKENS)],
    { BUTTERFLY_CACHE_DIR: cache },
  )
  expect(await local.exited).toBe(0)
  const reference = local.output().replace(/\n$/, '')
  expect(reference.length).toBeGreaterThan(0)
  expect(await complete(a.url)).toBe(reference)

  await a.proc.stop('SIGKILL')
  await worker.waitFor(new RegExp(`rejoined the mesh through ${b.url.replace(/[.]/g, '\\.')}`))
  const onB = await until<Health>(
    `${b.url}/health`,
    (h) => h.meshes[0]?.plan.stages.some((s) => s.peerId === stageOnA?.peerId) === true && h.meshes[0].ready,
  )
  expect(onB.meshes[0]?.plan.stages.find((s) => s.peerId === stageOnA?.peerId)).toEqual(stageOnA)
  expect(await complete(b.url)).toBe(reference)
  const out = worker.output()
  expect(out).toMatch(/kept layers \[\d+, \d+\) under the plan of http/)
  expect(out.match(/serving layers/g)).toHaveLength(1)
  expect(out).not.toMatch(/released layers/)
  expect(worker.child.exitCode).toBeNull()
}, 120_000)
