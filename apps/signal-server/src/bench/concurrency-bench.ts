import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { median, SLOW_CLAIM_OFF } from './bench-mesh.js'
import { cpuSeconds, spawnWorkers, startServerProcess, stopChild } from './bench-processes.js'
import {
  burst,
  type Completion,
  complete,
  describeFailures,
  type LoadFigures,
  loadFigures,
  openAiTarget,
  sustain,
} from './concurrency-load.js'
import { type SyntheticBenchOptions, syntheticBench } from './concurrency-synthetic.js'
import { describeThreads, workerThreadArgs } from './worker-threads.js'

/**
 * Many generations at once against one alone, side by side in one run:
 * - the embedded model (what `npm start` serves) in a real butterfly-server process with two
 *   butterfly-worker processes (r=1, two stages), driven through the API by the official openai
 *   client: one streamed completion alone, a burst of concurrent streamed completions, and short
 *   non-streamed completions sustained at that concurrency; the CPU time of each process;
 * - a synthetic model through the in-process gateway and two worker processes: one stream alone
 *   against concurrent streams, decode tokens/s.
 * Timings are reported, never asserted; a lost completion, or a text (token ids) that differs
 * from the same prompt's run alone, fails the section after its tables are printed.
 */
export interface ConcurrencyBenchOptions {
  readonly embedded: {
    readonly concurrency: number
    readonly maxTokens: number
    readonly shortTokens: number
    readonly sustainMs: number
    readonly rounds: number
    /** Keep the server's slow-claim check (default factor) instead of turning it off. */
    readonly slowClaimCheck: boolean
  }
  readonly synthetic: SyntheticBenchOptions
}

/**
 * The full or the quick (BUTTERFLY_BENCH_QUICK=1) configuration. The slow-claim check runs at its
 * defaults, as a deployment runs it (it shares a step's time among the steps in flight with it);
 * BUTTERFLY_BENCH_SLOW_CLAIM=off turns it off.
 */
export function concurrencyOptions(quick: boolean): ConcurrencyBenchOptions {
  const slowClaimCheck = process.env.BUTTERFLY_BENCH_SLOW_CLAIM !== 'off'
  const embedded = quick
    ? { concurrency: 8, maxTokens: 8, shortTokens: 4, sustainMs: 1000, rounds: 1 }
    : { concurrency: 64, maxTokens: 32, shortTokens: 8, sustainMs: 5000, rounds: 3 }
  const synthetic = quick
    ? { model: 'synthetic:tiny', streams: 4, promptTokens: 8, decodeTokens: 8, rounds: 1 }
    : { model: 'synthetic:100m', streams: 16, promptTokens: 16, decodeTokens: 16, rounds: 3 }
  return { embedded: { ...embedded, slowClaimCheck }, synthetic: { ...synthetic, slowClaimCheck } }
}

const claimCheck = (on: boolean) => (on ? 'slow-claim check on' : 'slow-claim check off')

// The embedded default model, as scripts/start-local-mesh.js serves it (src/bench and dist/bench
// are equally deep).
const EMBEDDED_MODEL = fileURLToPath(new URL('../../../../models/shakespeare', import.meta.url))

const SPEAKERS = ['ROMEO', 'JULIET', 'HAMLET', 'KING LEAR', 'MACBETH', 'PORTIA', 'OTHELLO', 'VIOLA']
const OPENINGS = [
  'My lord,',
  'Good night,',
  'What say you',
  'O, ',
  'Come hither',
  'Now,',
  'I pray',
  'Farewell',
]

/** Distinct prompts, one per concurrent request. */
function embeddedPrompts(n: number): string[] {
  return Array.from({ length: n }, (_, i) => {
    const speaker = SPEAKERS[i % SPEAKERS.length] as string
    const opening = OPENINGS[Math.floor(i / SPEAKERS.length) % OPENINGS.length] as string
    return `${speaker}:\n${opening}${i >= 64 ? ` ${i}` : ''}`
  })
}

interface Health {
  meshes: Array<{ ready: boolean; plan?: { stages: unknown[] } }>
}

async function untilStages(url: string, stages: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const health = (await fetch(`${url}/health`).then(
      (r) => r.json(),
      () => undefined,
    )) as Health | undefined
    const mesh = health?.meshes[0]
    if (mesh?.ready && mesh.plan?.stages.length === stages) return
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`no ready plan of ${stages} stages at ${url} within ${timeoutMs} ms`)
}

export interface CpuShare {
  readonly name: string
  readonly seconds: number
}

export interface EmbeddedFigures {
  readonly alone: LoadFigures
  readonly aloneTokensPerSec: number
  readonly burst: LoadFigures
  readonly ratio: number
  readonly sustained: LoadFigures
  /** CPU seconds per process over the burst rounds, and their wall time. */
  readonly cpu: readonly CpuShare[]
  readonly burstWallS: number
  /** Completion tokens of the burst rounds. */
  readonly burstTokens: number
  /** Completions lost or differing from the prompt alone, over every run of the section. */
  readonly wrong: number
  readonly failures: string
}

async function embeddedBench(
  opts: ConcurrencyBenchOptions['embedded'],
  relay: Relay,
): Promise<EmbeddedFigures> {
  const { concurrency } = opts
  const identities = await mkdtemp(join(tmpdir(), 'butterfly-bench-ids-'))
  const server = await startServerProcess([
    ...['--host', '127.0.0.1', '--port', '0', '--model', EMBEDDED_MODEL, '--plan-strategy', 'uniform'],
    // Explicit, whatever the defaults: every request of a burst is admitted at once.
    ...['--max-concurrent', String(concurrency), '--max-queued', String(4 * concurrency)],
    ...(opts.slowClaimCheck ? [] : ['--slow-claim-factor', String(SLOW_CLAIM_OFF)]),
    ...['--relay', relay],
  ])
  const workers = spawnWorkers({
    serverUrl: server.url,
    mesh: 'default',
    count: 2,
    name: 'conc',
    identities,
    args: workerThreadArgs(),
  })
  try {
    await untilStages(server.url, 2, 300_000)
    const target = openAiTarget(server.url, 'default', opts.maxTokens)
    const prompts = embeddedPrompts(concurrency)
    await complete(target, 'warm up', true)
    // Each prompt alone, streamed: its reference text, and one round of the stream alone.
    const aloneRuns: Completion[] = []
    for (const p of prompts) aloneRuns.push(await complete(target, p, true))
    const reference = new Map(aloneRuns.map((r) => [r.prompt, r.text]))
    const alone = loadFigures(aloneRuns, reference)
    const aloneTps = aloneRuns.filter((r) => !r.error).map((r) => r.tokens / ((r.endMs - r.startMs) / 1000))
    const short = { ...target, maxTokens: opts.shortTokens }
    const shortAlone: Completion[] = []
    for (const p of prompts) shortAlone.push(await complete(short, p, false))
    const shortReference = new Map(shortAlone.map((r) => [r.prompt, r.text]))

    const procs = [
      { name: 'server', pid: server.child.pid },
      ...workers.map((w, i) => ({ name: `worker-${i}`, pid: w.pid })),
    ]
    const cpuBefore = procs.map((p) => (p.pid === undefined ? undefined : cpuSeconds(p.pid)))
    const clientBefore = process.cpuUsage()
    const bursts: LoadFigures[] = []
    const burstRuns: Completion[] = []
    let burstWallMs = 0
    for (let round = 0; round < opts.rounds; round++) {
      const batch = await burst(target, prompts, true)
      burstRuns.push(...batch)
      const figures = loadFigures(batch, reference)
      burstWallMs += figures.wallMs
      bursts.push(figures)
    }
    const client = process.cpuUsage(clientBefore)
    const cpu: CpuShare[] = procs.map((p, i) => {
      const after = p.pid === undefined ? undefined : cpuSeconds(p.pid)
      const before = cpuBefore[i]
      return {
        name: p.name,
        seconds: after === undefined || before === undefined ? Number.NaN : after - before,
      }
    })
    cpu.push({ name: 'bench client (openai)', seconds: (client.user + client.system) / 1e6 })
    const sustainedRuns = await sustain(short, prompts, {
      concurrency,
      durationMs: opts.sustainMs,
      stream: false,
    })
    // Every run against its prompt's text alone: the alone runs count only when lost.
    const checked = [
      [[...aloneRuns, ...burstRuns], reference],
      [[...shortAlone, ...sustainedRuns], shortReference],
    ] as const
    const wrong = checked.map(([r, ref]) => loadFigures(r, ref))
    const burstFigures = medianFigures(bursts)
    return {
      alone,
      aloneTokensPerSec: median(aloneTps),
      burst: burstFigures,
      ratio: burstFigures.tokensPerSec / median(aloneTps),
      sustained: loadFigures(sustainedRuns, shortReference),
      cpu,
      burstWallS: burstWallMs / 1000,
      burstTokens: burstRuns.reduce((n, r) => n + r.tokens, 0),
      wrong: wrong.reduce((n, f) => n + f.lost + f.mismatches, 0),
      failures: checked
        .map(([r, ref]) => describeFailures(r, ref))
        .filter((d) => d.length > 0)
        .join('\n'),
    }
  } finally {
    await Promise.all(workers.map(stopChild))
    await server.close()
    await rm(identities, { recursive: true, force: true })
  }
}

/** Medians of the timings over rounds; losses and mismatches summed. */
function medianFigures(rounds: readonly LoadFigures[]): LoadFigures {
  const m = (f: (r: LoadFigures) => number) => median(rounds.map(f))
  const sum = (f: (r: LoadFigures) => number) => rounds.reduce((n, r) => n + f(r), 0)
  return {
    completions: sum((r) => r.completions),
    tokensPerSec: m((r) => r.tokensPerSec),
    completionsPerSec: m((r) => r.completionsPerSec),
    p50Ms: m((r) => r.p50Ms),
    p95Ms: m((r) => r.p95Ms),
    lost: sum((r) => r.lost),
    mismatches: sum((r) => r.mismatches),
    wallMs: m((r) => r.wallMs),
  }
}

const ms = (v: number) => v.toFixed(0)

/** How hidden states travel between the two workers (butterfly-server --relay). */
type Relay = 'chain' | 'coordinator'
const RELAYS: readonly Relay[] = ['chain', 'coordinator']

/** Prints the `## Concurrency` section; throws after printing when a completion was lost or differed. */
export async function concurrencySection(opts: ConcurrencyBenchOptions): Promise<void> {
  const e = opts.embedded
  console.log(
    `\n## Concurrency: embedded model (models/shakespeare), butterfly-server + 2 butterfly-worker processes (r=1, 2 stages, --max-concurrent ${e.concurrency}, ${claimCheck(e.slowClaimCheck)}, ${describeThreads()}), official openai client, /v1/completions, greedy; medians over rounds; hidden states chained worker to worker (--relay chain), then relayed through the server (the default)`,
  )
  const figures = new Map<Relay, EmbeddedFigures>()
  for (const relay of RELAYS) figures.set(relay, await embeddedBench(e, relay))
  console.log(
    [
      'load',
      'completions',
      'tok/s',
      'vs one stream (goal >= 10x)',
      'completions/s (goal >= 100)',
      'p50 ms',
      'p95 ms (goal <= 2000)',
      'lost (must be 0)',
      'mismatches (must be 0)',
    ].join('\t'),
  )
  const row = (label: string, f: LoadFigures, tps: number, ratio: string) =>
    console.log(
      [
        label,
        f.completions,
        tps.toFixed(1),
        ratio,
        f.completionsPerSec.toFixed(1),
        ms(f.p50Ms),
        ms(f.p95Ms),
        f.lost,
        f.mismatches,
      ].join('\t'),
    )
  for (const [relay, a] of figures) {
    row(
      `[${relay}] 1 stream alone, ${e.maxTokens} tokens (each prompt once)`,
      a.alone,
      a.aloneTokensPerSec,
      '1.00',
    )
    row(
      `[${relay}] ${e.concurrency} concurrent streams, ${e.maxTokens} tokens (x${e.rounds} rounds)`,
      a.burst,
      a.burst.tokensPerSec,
      `${a.ratio.toFixed(2)}x`,
    )
    row(
      `[${relay}] ${e.concurrency} concurrent, ${e.shortTokens} tokens, not streamed, ${e.sustainMs / 1000} s sustained`,
      a.sustained,
      a.sustained.tokensPerSec,
      '-',
    )
    console.log(
      `   [${relay}] CPU during the ${e.concurrency}-stream rounds (${a.burstWallS.toFixed(1)} s wall): ` +
        a.cpu
          .map(
            (c) =>
              `${c.name} ${c.seconds.toFixed(2)} s = ${((100 * c.seconds) / a.burstWallS).toFixed(0)}% of a core, ${((1000 * c.seconds) / a.burstTokens).toFixed(2)} ms/token`,
          )
          .join(', '),
    )
  }
  const wrongEmbedded = [...figures.values()].reduce((n, a) => n + a.wrong, 0)
  const failures = [...figures.values()]
    .map((a) => a.failures)
    .filter((f) => f.length > 0)
    .join('\n')

  const s = opts.synthetic
  console.log(
    `\n## Concurrency: ${s.model}, 2 workers (r=1, ${claimCheck(s.slowClaimCheck)}), in-process gateway, ${s.promptTokens}-token prompts, ${s.decodeTokens} greedy tokens; medians over rounds`,
  )
  // The same with each stage running its generations in two groups (--micro-batches 2), side by side.
  const b = await syntheticBench(s)
  const m = await syntheticBench({ ...s, workerArgs: ['--micro-batches', '2'] })
  console.log(
    ['streams', 'decode tok/s (aggregate)', 'vs one stream (goal >= 4x)', 'lost', 'mismatches'].join('\t'),
  )
  console.log(['1', b.aloneDecodeTokensPerSec.toFixed(1), '1.00', '-', '-'].join('\t'))
  for (const [label, r] of [
    [String(s.streams), b],
    [`${s.streams}, --micro-batches 2 (one stream alone: ${m.aloneDecodeTokensPerSec.toFixed(1)})`, m],
  ] as const) {
    console.log(
      [label, r.concurrentDecodeTokensPerSec.toFixed(1), `${r.ratio.toFixed(2)}x`, r.lost, r.mismatches].join(
        '\t',
      ),
    )
  }

  if (wrongEmbedded > 0 || b.lost + m.lost > 0 || b.mismatches + m.mismatches > 0) {
    throw new Error(
      `concurrency bench: completions lost or differing from the prompt run alone (embedded: ${wrongEmbedded}; synthetic: ${b.lost + m.lost} lost, ${b.mismatches + m.mismatches} differ)\n${failures}`,
    )
  }
}
