import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import { Xoshiro128ss } from '@butterfly/core'
import { nodeWrtc } from '@butterfly/node-platform'
import { type Proc, startWorkerProcess } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { attachGateway, type Gateway } from '../src/api/attach-gateway.js'
import type { MeshGateway } from '../src/gateway/mesh-gateway.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer, tinyModel } from './helpers.js'
import { meshTokens, readyPlan, referenceTokens } from './mesh-harness.js'

// r = 1: each stage has one peer, a worker process. When one is SIGKILLed mid-generation the mesh re-plans onto the
// peers left, the gateway moves the generation to the new pipeline and replays its tokens, and
// the generation finishes with the tokens an undisturbed run gives.
const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const TOKENS = 24
let server: SignalServer
let gateway: Gateway | undefined
let modelDir: string
let cleanup: () => Promise<void>
/** Worker processes alive, by peer id. */
const live = new Map<string, Proc>()
let identities: string

async function join(name: string): Promise<void> {
  const { proc, peerId } = await startWorkerProcess(server.url, name, {
    identity: joinPath(identities, `${name}.json`),
  })
  live.set(peerId, proc)
}

beforeAll(async () => {
  identities = await mkdtemp(joinPath(tmpdir(), 'butterfly-recovery-'))
  const model = await tinyModel()
  modelDir = model.dir
  cleanup = model.cleanup
  server = await startServer({
    meshes: [{ name: 'default', modelDir }],
    planOptions: { strategy: 'uniform' },
    extend: async (parts) => {
      gateway = await attachGateway(parts, { planWaitMs: 60_000 }, { wrtc: nodeWrtc() })
    },
  })
})

afterAll(async () => {
  await Promise.all([...live.values()].map((p) => p.stop()))
  await server?.close()
  await cleanup?.()
  await rm(identities, { recursive: true, force: true })
})

describe('a stage peer dying mid-generation (r = 1, with a spare peer)', () => {
  test('20 trials at random steps: each re-plans, replays and finishes with the undisturbed tokens', async () => {
    const reference = await referenceTokens(modelDir, PROMPT, TOKENS)

    const mesh = server.meshes.get('default')
    if (!mesh) throw new Error('no mesh')
    const served = gateway?.find('default') as MeshGateway
    const rng = new Xoshiro128ss(11)
    for (let trial = 0; trial < 20; trial++) {
      while (live.size < 2) await join(`w-${trial}-${live.size}`)
      await readyPlan(mesh, (plan) => plan.stages.length === 2)
      const victims = [...live.keys()]
      const victim = victims[Math.floor(rng.nextFloat64() * victims.length)] as string
      const killAt = 1 + Math.floor(rng.nextFloat64() * (TOKENS - 2))
      const tokens = await meshTokens(served, PROMPT, TOKENS, async (count) => {
        if (count !== killAt) return
        // Killed outright: no leave, no goodbye; the mesh finds out when the channel drops.
        const proc = live.get(victim) as Proc
        live.delete(victim)
        await proc.stop('SIGKILL')
      })
      expect(tokens).toEqual(reference)
    }
  })
})

describe('a stage peer dying with a full batch in flight (r = 1, three stages)', () => {
  test('16 generations batched on the peer: each finishes with its undisturbed tokens or fails with a stable code', async () => {
    const prompts = [PROMPT, [1, 9, 8, 7, 6], [1, 33, 44, 55, 66, 77, 88], [1, 120]]
    const references = await Promise.all(prompts.map((p) => referenceTokens(modelDir, p, TOKENS)))
    const mesh = server.meshes.get('default')
    if (!mesh) throw new Error('no mesh')
    const served = gateway?.find('default') as MeshGateway
    while (live.size < 3) await join(`batch-${live.size}`)
    const plan = await readyPlan(mesh, (p) => p.stages.length === 3)
    const victim = plan.stages[0]?.peerId as string
    let started = 0
    let killed: Promise<unknown> | undefined
    // Killed once every generation has streamed 3 tokens: all 16 have steps on it at once.
    const kill = async (count: number) => {
      if (count === 3) started++
      if (started === 16 && killed === undefined) {
        const proc = live.get(victim) as Proc
        live.delete(victim)
        killed = proc.stop('SIGKILL')
        await killed
      }
    }
    const runs = Array.from({ length: 16 }, (_, i) =>
      meshTokens(served, prompts[i % 4] as number[], TOKENS, kill).then(
        (tokens) => ({ ok: true as const, i, tokens }),
        (err: unknown) => ({ ok: false as const, i, err }),
      ),
    )
    const settled = await Promise.all(runs)
    expect(killed).toBeDefined()
    for (const r of settled) {
      if (r.ok) expect(r.tokens, `generation ${r.i}`).toEqual(references[r.i % 4])
      else
        expect((r.err as { code?: unknown }).code, `generation ${r.i}: ${String(r.err)}`).toMatch(
          /^ERR_[A-Z_]+$/,
        )
    }
    // The two peers left hold the model between them: none had to fail. (A failure names itself:
    // CI once saw 14 of 16 finish, which does not reproduce on a quiet or a loaded machine.)
    const failed = settled.flatMap((r) => (r.ok ? [] : [`generation ${r.i}: ${String(r.err)}`]))
    expect(failed, failed.join('; ')).toEqual([])
  })
})
