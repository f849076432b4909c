import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import { type PlanMessage, stagePeers } from '@butterfly/core'
import { nodeWrtc } from '@butterfly/node-platform'
import type { FaultMode } from '@butterfly/testing'
import { type Proc, startWorkerProcess } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { attachGateway, type Gateway } from '../src/api/attach-gateway.js'
import type { MeshGateway } from '../src/gateway/mesh-gateway.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer, tinyModel } from './helpers.js'
import { classReferenceTokens, meshTokens, readyPlan } from './mesh-harness.js'

/*
 * Result voting over real WebRTC between real processes: a mesh of fp32 and fp16-weight workers
 * (two numeric classes; honest ones are `butterfly-worker join` processes), two stages of r
 * replicas each, f of them faulty per stage: test-only worker processes whose stage executor is
 * wrapped by FaultyStage (packages/testing/src/fixtures/faulty-worker.ts). Placement keeps each stage to one class (homogeneous redundancy), every
 * replica is calibrated against the exact answer when it joins, and each round decodes 200 tokens:
 * they must equal the single-process reference of the classes that served each stage, every
 * faulty peer must end flagged and excluded, and no honest peer may ever be blamed.
 */
const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const TOKENS = 200
const STEP_TIMEOUT_MS = 2000
const GIB = 2 ** 30

interface Round {
  /** Fault modes of the f liars of the fp32 stage, then of the fp16w stage. */
  readonly fp32: readonly FaultMode[]
  readonly fp16: readonly FaultMode[]
  /** The first liar of each class gets the most memory, so it is its stage's primary (it ships the full state). */
  readonly liarsLead?: boolean
}

const ROUNDS: Record<number, readonly Round[]> = {
  3: [
    { fp32: ['noise'], fp16: ['zero'] },
    { fp32: ['stale'], fp16: ['other-layer'], liarsLead: true },
    { fp32: ['late'], fp16: ['silent'], liarsLead: true },
  ],
  5: [
    { fp32: ['noise', 'stale'], fp16: ['zero', 'other-layer'] },
    { fp32: ['late', 'other-layer'], fp16: ['silent', 'noise'], liarsLead: true },
  ],
}

for (const r of [3, 5]) {
  const f = (r - 1) / 2
  describe(`r = ${r} (f = ${f}) over two numeric classes`, () => {
    let server: SignalServer
    let gateway: Gateway | undefined
    let modelDir: string
    let cleanup: () => Promise<void>
    const procs: Proc[] = []
    const honest: string[] = []
    const classOf = new Map<string, 'fp32' | 'fp16'>()
    let identities: string

    async function join(
      name: string,
      weights: 'fp32' | 'fp16',
      memoryBytes: number,
      fault?: { mode: FaultMode; seed: number },
    ): Promise<string> {
      const { proc, peerId } = await startWorkerProcess(server.url, name, {
        weights,
        memoryBytes,
        identity: joinPath(identities, `${name}.json`),
        ...(fault ? { fault: { ...fault, delayMs: 3 * STEP_TIMEOUT_MS } } : {}),
      })
      procs.push(proc)
      classOf.set(peerId, weights)
      return peerId
    }

    beforeAll(async () => {
      identities = await mkdtemp(joinPath(tmpdir(), 'butterfly-byz-'))
      const model = await tinyModel()
      modelDir = model.dir
      cleanup = model.cleanup
      server = await startServer({
        meshes: [{ name: 'default', modelDir }],
        replicas: r,
        planOptions: { strategy: 'uniform' },
        extend: async (parts) => {
          gateway = await attachGateway(
            parts,
            { stepTimeoutMs: STEP_TIMEOUT_MS, planWaitMs: 60_000 },
            { wrtc: nodeWrtc() },
          )
        },
      })
      const starting: Array<Promise<string>> = []
      for (const weights of ['fp32', 'fp16'] as const) {
        for (let i = 0; i < r - f; i++)
          starting.push(join(`honest-${weights}-${i}`, weights, i === 0 ? 4 * GIB : GIB))
      }
      honest.push(...(await Promise.all(starting)))
    })

    afterAll(async () => {
      // Silent liars never finish their last step; nothing needs a graceful exit here.
      await Promise.all(procs.map((p) => p.stop('SIGKILL')))
      await server?.close()
      await cleanup?.()
      await rm(identities, { recursive: true, force: true })
    })

    for (const [n, round] of (ROUNDS[r] ?? []).entries()) {
      const modes = `${round.fp32.join('+')} (fp32), ${round.fp16.join('+')} (fp16w)`
      test(`round ${n + 1}: ${modes}${round.liarsLead ? ', liars as primaries' : ''}: ${TOKENS} honest tokens`, async () => {
        const mesh = server.meshes.get('default')
        if (!mesh) throw new Error('no mesh')
        // Liars get the most memory when they lead, so one is each stage's primary.
        const memory = round.liarsLead ? 8 * GIB : GIB
        const starting: Array<Promise<string>> = []
        for (const [weights, list] of [
          ['fp32', round.fp32],
          ['fp16', round.fp16],
        ] as const) {
          for (const [i, mode] of list.entries()) {
            starting.push(
              join(`liar-${n}-${weights}-${mode}`, weights, i === 0 ? memory : GIB, { mode, seed: 31 + i }),
            )
          }
        }
        const liars = await Promise.all(starting)
        const liarModes = new Map(liars.map((id, i) => [id, [...round.fp32, ...round.fp16][i]]))
        const ids = new Set(liars)
        const plan: PlanMessage = await readyPlan(
          mesh,
          (p) =>
            p.stages.length === 2 &&
            p.stages.every((s) => stagePeers(s).length === r) &&
            [...ids].every((id) => p.stages.some((s) => stagePeers(s).includes(id))),
        )
        // Homogeneous redundancy: each stage is served by one class only.
        const stageClass = plan.stages.map((s) => {
          const classes = new Set(stagePeers(s).map((id) => classOf.get(id)))
          expect(classes.size).toBe(1)
          return [...classes][0]
        })
        expect(new Set(stageClass).size).toBe(2)
        const reference = await classReferenceTokens(
          modelDir,
          plan.stages.map((s) => ({ start: s.start, end: s.end })),
          (i) => stageClass[i] === 'fp16',
          PROMPT,
          TOKENS,
        )
        const served = gateway?.find('default') as MeshGateway
        expect(await meshTokens(served, PROMPT, TOKENS)).toEqual(reference)

        for (const liar of liars) {
          expect(
            served.reputation.isFlagged(liar),
            `${liar} ${liarModes.get(liar)}: ${JSON.stringify(served.reputation.get(liar))}`,
          ).toBe(true)
          expect(mesh.excludedPeers()).toContain(liar)
          // What a cluster would share of it: the gateway's counts, as its book has them.
          const shared = mesh?.evidenceSource?.evidence().get(liar)
          const book = served.reputation.get(liar)
          expect(shared).toBeDefined()
          expect([shared?.agreements, shared?.disagreements]).toEqual([book?.agreements, book?.disagreements])
        }
        const health = (await (await fetch(`${server.url}/health`)).json()) as {
          meshes: Array<{ peers: Array<{ id: string; numericClass: string; excluded: boolean }> }>
        }
        for (const p of health.meshes[0]?.peers ?? []) {
          expect(p.numericClass).toBe(classOf.get(p.id) === 'fp16' ? 'cpu/fp16w' : 'cpu/fp32')
          if (ids.has(p.id)) expect(p.excluded).toBe(true)
        }
        for (const h of honest) {
          const rec = served.reputation.get(h)
          expect(rec?.flagged ?? false, h).toBe(false)
          expect(rec?.disagreements ?? 0).toBe(0)
          expect(rec?.timeouts ?? 0).toBe(0)
        }
      })
    }
  })
}
