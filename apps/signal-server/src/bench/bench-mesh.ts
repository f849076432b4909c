import { type GenerateRequest, type ReputationOptions, stagePeers } from '@butterfly/core'
import { nodeWrtc } from '@butterfly/node-platform'
import { attachGateway, type Gateway } from '../api/attach-gateway.js'
import type { SlowClaimOptions } from '../gateway/claim-check.js'
import type { ServedModel } from '../gateway/served-model.js'
import { createSignalServer, type SignalServer } from '../http/signal-server.js'
import { spawnWorkers, stopChild } from './bench-processes.js'

// A server with its gateway and N real worker processes over WebRTC, for the benches.

export interface BenchMeshInit {
  readonly modelDir: string
  readonly workers: number
  /** Peers per stage (1: no voting). */
  readonly replicas?: number
  readonly reputation?: ReputationOptions
  readonly verification?: 'windowed' | 'every-step'
  readonly verifyWindow?: number
  readonly slowClaim?: SlowClaimOptions
  /** Folder for the workers' identity files: one key joins a mesh once. */
  readonly identities: string
  readonly name: string
  /** More `butterfly-worker join` flags, e.g. `--micro-batches 1`. */
  readonly workerArgs?: readonly string[]
}

/** A slow-claim factor that never excludes a peer (BUTTERFLY_BENCH_SLOW_CLAIM=off). */
export const SLOW_CLAIM_OFF = 1_000_000

export interface BenchMesh {
  readonly served: ServedModel
  readonly server: SignalServer
  close(): Promise<void>
}

export async function startBenchMesh(init: BenchMeshInit): Promise<BenchMesh> {
  let gateway: Gateway | undefined
  const server = await createSignalServer({
    port: 0,
    meshes: [{ name: 'bench', modelDir: init.modelDir }],
    planOptions: { strategy: 'uniform' },
    replicas: init.replicas ?? 1,
    extend: async (parts) => {
      gateway = await attachGateway(
        parts,
        {
          stepTimeoutMs: 120_000,
          ...(init.reputation ? { reputation: init.reputation } : {}),
          ...(init.verification ? { verification: init.verification } : {}),
          ...(init.verifyWindow ? { verifyWindow: init.verifyWindow } : {}),
          ...(init.slowClaim ? { slowClaim: init.slowClaim } : {}),
        },
        { wrtc: nodeWrtc() },
      )
    },
  })
  const children = spawnWorkers({
    serverUrl: server.url,
    mesh: 'bench',
    count: init.workers,
    name: init.name,
    identities: init.identities,
    ...(init.workerArgs ? { args: init.workerArgs } : {}),
  })
  const close = async () => {
    await Promise.all(children.map(stopChild))
    await server.close()
  }
  try {
    // Every worker holds layers: as stages (r = 1) or as replicas of the stages.
    const mesh = server.meshes.get('bench')
    if (!mesh) throw new Error('no bench mesh')
    const deadline = AbortSignal.timeout(300_000)
    for (;;) {
      const plan = await mesh.waitForReadyPlan(deadline)
      if (plan.stages.flatMap(stagePeers).length === init.workers) break
      await new Promise<void>((resolve) => mesh.once('plan', () => resolve()))
    }
    return { served: gateway?.find('bench') as ServedModel, server, close }
  } catch (err) {
    await close()
    throw err
  }
}

type Run = (req: GenerateRequest, signal: AbortSignal) => AsyncGenerator<unknown, unknown>

/**
 * Prefill tokens/s (prompt to first token), decode tokens/s (the rest) and the time to the first
 * token in ms, as the consumer sees them (a verified token arrives once it is confirmed).
 */
export async function timeTokens(
  run: Run,
  prompt: number[],
  tokens: number,
): Promise<[number, number, number]> {
  const start = performance.now()
  let first = 0
  let count = 0
  const signal = new AbortController().signal
  for await (const _ of run({ promptIds: prompt, maxTokens: tokens, sampling: { temperature: 0 } }, signal)) {
    if (count++ === 0) first = performance.now()
  }
  const end = performance.now()
  return [prompt.length / ((first - start) / 1000), (tokens - 1) / ((end - first) / 1000), first - start]
}

export { median } from '@butterfly/node-platform/bench'
