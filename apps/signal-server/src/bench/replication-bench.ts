import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolveModelDir } from '@butterfly/node-platform'
import { type BenchMesh, median, startBenchMesh, timeTokens } from './bench-mesh.js'

/**
 * Decode tokens/s of one model through three meshes side by side, round-robin in one run: one
 * worker (no voting), three replicas voting on every step, and three replicas under adaptive
 * replication (a peer with a clean record of trustAfter steps is spot-checked on a share of its
 * steps). Round 0 warms up (and builds the trust adaptive replication needs); medians of the rest.
 */
export interface ReplicationBenchOptions {
  readonly model: string
  readonly promptTokens: number
  readonly decodeTokens: number
  readonly rounds: number
}

export interface ReplicationBenchRow {
  readonly label: string
  readonly decodeTokensPerSec: number
  /** Against the unreplicated mesh, per round. */
  readonly ratio: number
}

export async function replicationBench(opts: ReplicationBenchOptions): Promise<ReplicationBenchRow[]> {
  const modelDir = await resolveModelDir(opts.model)
  const identities = await mkdtemp(join(tmpdir(), 'butterfly-bench-ids-'))
  const configs = [
    { label: 'r=1 (no voting)', workers: 1, replicas: 1 },
    { label: 'r=3, every step voted', workers: 3, replicas: 3, reputation: { trustAfter: 1_000_000_000 } },
    {
      label: 'r=3, adaptive (trust after 20, spot-check 10%)',
      workers: 3,
      replicas: 3,
      reputation: { trustAfter: 20, spotCheckRate: 0.1 },
    },
  ]
  const meshes: BenchMesh[] = []
  try {
    for (const [i, c] of configs.entries()) {
      meshes.push(await startBenchMesh({ modelDir, identities, name: `repl${i}`, ...c }))
    }
    const prompt = Array.from({ length: opts.promptTokens }, (_, i) => 3 + ((i * 31) % 250))
    const decode: number[][] = configs.map(() => [])
    for (let round = 0; round <= opts.rounds; round++) {
      for (const [i, mesh] of meshes.entries()) {
        const [, tps] = await timeTokens(
          (req, signal) => mesh.served.generate(req, signal),
          prompt,
          opts.decodeTokens,
        )
        if (round > 0) decode[i]?.push(tps)
      }
    }
    const base = decode[0] ?? []
    return configs.map((c, i) => {
      const own = decode[i] ?? []
      return {
        label: c.label,
        decodeTokensPerSec: median(own),
        ratio: median(own.map((v, k) => v / (base[k] ?? v))),
      }
    })
  } finally {
    await Promise.all(meshes.map((m) => m.close()))
    await rm(identities, { recursive: true, force: true })
  }
}
