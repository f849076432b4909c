import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { type GenerateRequest, generate, type Pipeline } from '@butterfly/core'
import {
  createLocalPipeline,
  createNodeBackend,
  loadModel,
  nodeWrtc,
  resolveModelDir,
} from '@butterfly/node-worker'
import type { ServedModel } from '../api/completion-backend.js'
import { attachGateway, type Gateway } from '../gateway/gateway.js'
import { createSignalServer, type SignalServer } from '../signal-server.js'

/**
 * Decode tokens/s of a ~100M synthetic model through the mesh (N worker processes over
 * WebRTC, one replica each, driven by the server's gateway) against the same model in one
 * process, measured round-robin in one run so drift hits both alike.
 */
export interface MeshBenchOptions {
  readonly model: string
  readonly workerCounts: readonly number[]
  readonly promptTokens: number
  readonly decodeTokens: number
  readonly rounds: number
}

export interface MeshBenchRow {
  readonly workers: number
  readonly meshDecodeTokensPerSec: number
  readonly singleDecodeTokensPerSec: number
  readonly ratio: number
  readonly meshPrefillTokensPerSec: number
}

const WORKER_BIN = join(
  dirname(createRequire(import.meta.url).resolve('@butterfly/node-worker')),
  '..',
  'bin',
  'butterfly-worker.js',
)

export async function meshBench(opts: MeshBenchOptions): Promise<MeshBenchRow[]> {
  const modelDir = await resolveModelDir(opts.model)
  let gateway: Gateway | undefined
  const server: SignalServer = await createSignalServer({
    port: 0,
    meshes: [{ name: 'bench', modelDir }],
    planOptions: { strategy: 'uniform' },
    extend: async (parts) => {
      gateway = await attachGateway(parts, { stepTimeoutMs: 120_000 }, { wrtc: nodeWrtc() })
    },
  })
  const model = await loadModel(modelDir)
  const single = await createLocalPipeline(model, createNodeBackend(), { stages: 1 })
  const served = gateway?.find('bench') as ServedModel
  const prompt = Array.from({ length: opts.promptTokens }, (_, i) => 3 + ((i * 31) % 250))
  const rows: MeshBenchRow[] = []
  // Each worker process needs its own identity: one key joins a mesh once.
  const identities = await mkdtemp(join(tmpdir(), 'butterfly-bench-ids-'))
  try {
    for (const n of opts.workerCounts) {
      const workers = Array.from({ length: n }, (_, i) =>
        spawn(
          process.execPath,
          [
            WORKER_BIN,
            'join',
            '--server',
            server.url,
            '--mesh',
            'bench',
            '--device',
            'cpu',
            '--name',
            `bench-${i}`,
          ],
          {
            stdio: 'ignore',
            env: { ...process.env, BUTTERFLY_IDENTITY: join(identities, `worker-${n}-${i}.json`) },
          },
        ),
      )
      try {
        await waitReady(server, n)
        const meshDecode: number[] = []
        const meshPrefill: number[] = []
        const ratios: number[] = []
        for (let round = 0; round <= opts.rounds; round++) {
          const [mp, md] = await timeTokens(
            (req, signal) => served.generate(req, signal),
            prompt,
            opts.decodeTokens,
          )
          const [, sd] = await timeTokens(
            (req, signal) => generate(single as Pipeline, req, signal),
            prompt,
            opts.decodeTokens,
          )
          if (round === 0) continue
          meshDecode.push(md)
          meshPrefill.push(mp)
          ratios.push(md / sd)
        }
        rows.push({
          workers: n,
          meshDecodeTokensPerSec: median(meshDecode),
          meshPrefillTokensPerSec: median(meshPrefill),
          singleDecodeTokensPerSec: median(meshDecode.map((m, i) => m / (ratios[i] ?? 1))),
          ratio: median(ratios),
        })
      } finally {
        await Promise.all(workers.map(stop))
      }
    }
  } finally {
    await single.dispose()
    await model.close()
    await server.close()
    await rm(identities, { recursive: true, force: true })
  }
  return rows
}

type Run = (req: GenerateRequest, signal: AbortSignal) => AsyncGenerator<unknown, unknown>

/** Prefill tokens/s (prompt to first token) and decode tokens/s (the rest). */
async function timeTokens(run: Run, prompt: number[], tokens: number): Promise<[number, number]> {
  const start = performance.now()
  let first = 0
  let count = 0
  const signal = new AbortController().signal
  for await (const _ of run({ promptIds: prompt, maxTokens: tokens, sampling: { temperature: 0 } }, signal)) {
    if (count++ === 0) first = performance.now()
  }
  const end = performance.now()
  return [prompt.length / ((first - start) / 1000), (tokens - 1) / ((end - first) / 1000)]
}

async function waitReady(server: SignalServer, stages: number): Promise<void> {
  const mesh = server.meshes.get('bench')
  if (!mesh) throw new Error('no bench mesh')
  const deadline = AbortSignal.timeout(300_000)
  for (;;) {
    const plan = await mesh.waitForReadyPlan(deadline)
    if (plan.stages.length === stages) return
    await new Promise<void>((resolve) => mesh.once('plan', () => resolve()))
  }
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve()
    child.once('exit', () => resolve())
    child.kill('SIGTERM')
  })
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

export function describeMachine(): string {
  const c = cpus()
  return `${c[0]?.model ?? 'cpu'} x ${c.length}`
}
