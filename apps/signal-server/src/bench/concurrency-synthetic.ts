import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolveModelDir } from '@butterfly/node-platform'
import { median, SLOW_CLAIM_OFF, startBenchMesh } from './bench-mesh.js'

// The synthetic half of the concurrency section: a synthetic model through the in-process gateway
// and two worker processes (r=1), one stream alone against concurrent streams.

export interface SyntheticBenchOptions {
  readonly model: string
  readonly streams: number
  readonly promptTokens: number
  readonly decodeTokens: number
  readonly rounds: number
  /** Keep the gateway's slow-claim check (default factor) instead of turning it off. */
  readonly slowClaimCheck: boolean
  /** More `butterfly-worker join` flags. */
  readonly workerArgs?: readonly string[]
}

export interface SyntheticFigures {
  readonly aloneDecodeTokensPerSec: number
  readonly concurrentDecodeTokensPerSec: number
  readonly ratio: number
  readonly mismatches: number
  readonly lost: number
}

/** Decode tokens/s of one stream alone (median over the prompts) and of all at once. */
export async function syntheticBench(opts: SyntheticBenchOptions): Promise<SyntheticFigures> {
  const modelDir = await resolveModelDir(opts.model)
  const identities = await mkdtemp(join(tmpdir(), 'butterfly-bench-ids-'))
  const mesh = await startBenchMesh({
    modelDir,
    workers: 2,
    identities,
    name: opts.workerArgs ? 'conc-synthetic-args' : 'conc-synthetic',
    ...(opts.workerArgs ? { workerArgs: opts.workerArgs } : {}),
    ...(opts.slowClaimCheck ? {} : { slowClaim: { factor: SLOW_CLAIM_OFF } }),
  })
  try {
    const prompts = Array.from({ length: opts.streams }, (_, s) =>
      Array.from({ length: opts.promptTokens }, (_, i) => 3 + ((i * 31 + s * 17) % 250)),
    )
    const run = async (prompt: number[]) => {
      const ids: number[] = []
      const start = performance.now()
      let first = start
      try {
        const request = { promptIds: prompt, maxTokens: opts.decodeTokens, sampling: { temperature: 0 } }
        for await (const t of mesh.served.generate(request, new AbortController().signal)) {
          if (ids.push(t.id) === 1) first = performance.now()
        }
        return { ids, first, end: performance.now(), lost: false }
      } catch {
        return { ids, first, end: performance.now(), lost: true }
      }
    }
    await run(prompts[0] as number[])
    const alone = []
    for (const p of prompts) alone.push(await run(p))
    const reference = alone.map((r) => r.ids.join(','))
    const concurrent: number[] = []
    let mismatches = 0
    let lost = alone.filter((r) => r.lost).length
    for (let round = 0; round < opts.rounds; round++) {
      const all = await Promise.all(prompts.map(run))
      lost += all.filter((r) => r.lost).length
      mismatches += all.filter((r, i) => !r.lost && r.ids.join(',') !== reference[i]).length
      // From the first token of any stream to the last token of all: decode, prefills overlapping.
      const decoded = all.reduce((n, r) => n + Math.max(0, r.ids.length - 1), 0)
      const wall = Math.max(...all.map((r) => r.end)) - Math.min(...all.map((r) => r.first))
      concurrent.push(decoded / (wall / 1000))
    }
    const aloneTps = median(alone.map((r) => (r.ids.length - 1) / ((r.end - r.first) / 1000)))
    return {
      aloneDecodeTokensPerSec: aloneTps,
      concurrentDecodeTokensPerSec: median(concurrent),
      ratio: median(concurrent) / aloneTps,
      mismatches,
      lost,
    }
  } finally {
    await mesh.close()
    await rm(identities, { recursive: true, force: true })
  }
}
