import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  completionText,
  type Proc,
  referenceText,
  SERVER_BIN,
  start,
  until,
  WORKER_BIN,
} from '@butterfly/testing/node'
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

const complete = (url: string) => completionText(url, PROMPT, MAX_TOKENS)

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
  const reference = await referenceText('synthetic:tiny', PROMPT, MAX_TOKENS, { BUTTERFLY_CACHE_DIR: cache })
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
