import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolveModelDir } from '@butterfly/node-platform'
import type { MeshGateway } from '../gateway/mesh-gateway.js'
import { type BenchMesh, type BenchMeshInit, median, startBenchMesh, timeTokens } from './bench-mesh.js'

/**
 * Decode tokens/s, time to first token and wire bytes per token of one model through several
 * meshes side by side, round-robin in one run: one worker (nothing verified), three replicas
 * voting on every step, and three replicas under windowed verification at a few window sizes (a
 * trusted leader runs ahead; one other replica confirms each window before its tokens are
 * released). Round 0 warms up (and builds the trust a leader needs); medians of the rest. Every
 * mesh runs on this machine, so replicas share its cores: on separate machines a verifier's
 * replay would not slow the leader down at all.
 */
export interface ReplicationBenchOptions {
  readonly model: string
  readonly promptTokens: number
  readonly decodeTokens: number
  readonly rounds: number
  /** Window sizes to measure (default 4, 8, 16). */
  readonly windows?: readonly number[]
}

export interface ReplicationBenchRow {
  readonly label: string
  readonly decodeTokensPerSec: number
  /** Against the unreplicated mesh, per round. */
  readonly ratio: number
  readonly ttftMs: number
  /** Frame bytes between the gateway and the workers, both ways, per generated token. */
  readonly wireBytesPerToken: number
}

type MeshConfig = Omit<BenchMeshInit, 'modelDir' | 'identities' | 'name'> & { readonly label: string }

export async function replicationBench(opts: ReplicationBenchOptions): Promise<ReplicationBenchRow[]> {
  const modelDir = await resolveModelDir(opts.model)
  const identities = await mkdtemp(join(tmpdir(), 'butterfly-bench-ids-'))
  const configs: MeshConfig[] = [
    { label: 'r=1 (nothing verified)', workers: 1, replicas: 1 },
    { label: 'r=3, every step voted (2f+1)', workers: 3, replicas: 3, verification: 'every-step' },
    ...(opts.windows ?? [4, 8, 16]).map(
      (w): MeshConfig => ({
        label: `r=3, windowed w=${w} (trust after 20)`,
        workers: 3,
        replicas: 3,
        verification: 'windowed',
        verifyWindow: w,
        reputation: { trustAfter: 20 },
      }),
    ),
  ]
  const meshes: BenchMesh[] = []
  try {
    for (const [i, c] of configs.entries()) {
      meshes.push(await startBenchMesh({ modelDir, identities, name: `repl${i}`, ...c }))
    }
    const prompt = Array.from({ length: opts.promptTokens }, (_, i) => 3 + ((i * 31) % 250))
    const decode: number[][] = configs.map(() => [])
    const ttft: number[][] = configs.map(() => [])
    const bytes: number[][] = configs.map(() => [])
    for (let round = 0; round <= opts.rounds; round++) {
      for (const [i, mesh] of meshes.entries()) {
        const gateway = mesh.served as MeshGateway
        const before = gateway.wireBytes()
        const [, tps, first] = await timeTokens(
          (req, signal) => mesh.served.generate(req, signal),
          prompt,
          opts.decodeTokens,
        )
        const after = gateway.wireBytes()
        if (round === 0) continue
        decode[i]?.push(tps)
        ttft[i]?.push(first)
        bytes[i]?.push((after.sent - before.sent + after.received - before.received) / opts.decodeTokens)
      }
    }
    const base = decode[0] ?? []
    return configs.map((c, i) => {
      const own = decode[i] ?? []
      return {
        label: c.label,
        decodeTokensPerSec: median(own),
        ratio: median(own.map((v, k) => v / (base[k] ?? v))),
        ttftMs: median(ttft[i] ?? []),
        wireBytesPerToken: median(bytes[i] ?? []),
      }
    })
  } finally {
    await Promise.all(meshes.map((m) => m.close()))
    await rm(identities, { recursive: true, force: true })
  }
}
