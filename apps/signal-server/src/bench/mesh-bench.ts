import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { type GenerateRequest, generate, type Pipeline } from '@butterfly/core'
import { createLocalPipeline, createNodeBackend, loadModel, resolveModelDir } from '@butterfly/node-platform'
import type { MeshGateway } from '../gateway/mesh-gateway.js'
import { median, startBenchMesh, timeTokens } from './bench-mesh.js'
/**
 * Decode tokens/s of a ~100M synthetic model through the mesh (N worker processes over
 * WebRTC, one replica each, driven by the server's gateway) against the same model in one
 * process, measured round-robin in one run so drift hits both alike. The mesh runs each round
 * twice on the same workers: hidden states chained worker to worker (--relay chain), and relayed
 * through the coordinator.
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
  /** The same workers with hidden states relayed through the coordinator (--relay coordinator). */
  readonly relayedDecodeTokensPerSec: number
  readonly relayedRatio: number
}

export async function meshBench(opts: MeshBenchOptions): Promise<MeshBenchRow[]> {
  const modelDir = await resolveModelDir(opts.model)
  const model = await loadModel(modelDir)
  const single = await createLocalPipeline(model, createNodeBackend(), { stages: 1 })
  const prompt = Array.from({ length: opts.promptTokens }, (_, i) => 3 + ((i * 31) % 250))
  const rows: MeshBenchRow[] = []
  const identities = await mkdtemp(join(tmpdir(), 'butterfly-bench-ids-'))
  try {
    for (const n of opts.workerCounts) {
      const mesh = await startBenchMesh({ modelDir, workers: n, identities, name: `mesh${n}` })
      try {
        const meshDecode: number[] = []
        const meshPrefill: number[] = []
        const ratios: number[] = []
        const relayedRatios: number[] = []
        const gateway = mesh.served as MeshGateway
        const viaMesh = (req: GenerateRequest, signal: AbortSignal) => mesh.served.generate(req, signal)
        for (let round = 0; round <= opts.rounds; round++) {
          await gateway.setRelay('coordinator')
          const [, rd] = await timeTokens(viaMesh, prompt, opts.decodeTokens)
          await gateway.setRelay('chain')
          const [mp, md] = await timeTokens(viaMesh, prompt, opts.decodeTokens)
          const [, sd] = await timeTokens(
            (req, signal) => generate(single as Pipeline, req, signal),
            prompt,
            opts.decodeTokens,
          )
          if (round === 0) continue
          meshDecode.push(md)
          meshPrefill.push(mp)
          ratios.push(md / sd)
          relayedRatios.push(rd / sd)
        }
        const singleDecode = meshDecode.map((m, i) => m / (ratios[i] ?? 1))
        rows.push({
          workers: n,
          meshDecodeTokensPerSec: median(meshDecode),
          meshPrefillTokensPerSec: median(meshPrefill),
          singleDecodeTokensPerSec: median(singleDecode),
          ratio: median(ratios),
          relayedDecodeTokensPerSec: median(singleDecode.map((sd, i) => sd * (relayedRatios[i] ?? 0))),
          relayedRatio: median(relayedRatios),
        })
      } finally {
        await mesh.close()
      }
    }
  } finally {
    await single.dispose()
    await model.close()
    await rm(identities, { recursive: true, force: true })
  }
  return rows
}

export function describeMachine(): string {
  const c = cpus()
  return `${c[0]?.model ?? 'cpu'} x ${c.length}`
}
