import { execFileSync } from 'node:child_process'
import { cpus, totalmem } from 'node:os'
import { fileURLToPath } from 'node:url'
import { type EngineRunResult, type EngineRunSpec, runEngineConfig } from './engine-run.js'

/**
 * `npm run bench`: prefill and decode tokens/s of synthetic ~10M and ~100M models in one
 * process, K = 1 and K = 4 stages side by side, the K4/K1 ratio (goal ≥ 0.97) and each
 * configuration's peak RSS. Each configuration runs in a child process.
 */
const CHILD_FLAG = '--bench-child'

async function child(json: string): Promise<void> {
  const result = await runEngineConfig(JSON.parse(json) as EngineRunSpec)
  process.stdout.write(`${JSON.stringify(result)}\n`)
}

function runChild(spec: EngineRunSpec): EngineRunResult {
  const out = execFileSync(
    process.execPath,
    [fileURLToPath(import.meta.url), CHILD_FLAG, JSON.stringify(spec)],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  const line = out.trim().split('\n').at(-1) ?? ''
  return JSON.parse(line) as EngineRunResult
}

function main(): void {
  const quick = process.env.BUTTERFLY_BENCH_QUICK === '1'
  const models = quick ? ['synthetic:tiny'] : ['synthetic:10m', 'synthetic:100m']
  console.log(
    `# Butterfly engine bench — ${cpus()[0]?.model ?? 'cpu'} × ${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`,
  )
  console.log('# onnxruntime-node CPU, fp32, greedy; medians of the timed repeats after one warm-up\n')
  const header = ['model', 'K', 'prefill tok/s', 'decode tok/s', 'load s', 'peak RSS MiB']
  console.log(header.join('\t'))
  const summary: string[] = []
  for (const model of models) {
    const big = model.endsWith('100m')
    const base = { model, promptTokens: 128, decodeTokens: big ? 48 : 96, repeats: big ? 3 : 5 }
    const results = [1, 4].map((stages) => runChild({ ...base, stages }))
    for (const r of results) {
      console.log(
        [
          r.model,
          r.stages,
          r.prefillTokensPerSec.toFixed(1),
          r.decodeTokensPerSec.toFixed(1),
          r.loadSeconds.toFixed(1),
          r.peakRssMiB.toFixed(0),
        ].join('\t'),
      )
    }
    const [k1, k4] = results as [EngineRunResult, EngineRunResult]
    summary.push(
      `${model}: K4/K1 prefill ${(k4.prefillTokensPerSec / k1.prefillTokensPerSec).toFixed(3)}, decode ${(k4.decodeTokensPerSec / k1.decodeTokensPerSec).toFixed(3)} (goal ≥ 0.97)`,
    )
  }
  console.log(`\n${summary.join('\n')}`)
}

if (process.argv[2] === CHILD_FLAG) await child(process.argv[3] ?? '{}')
else main()
