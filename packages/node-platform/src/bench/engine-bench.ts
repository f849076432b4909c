import { execFileSync } from 'node:child_process'
import { cpus, totalmem } from 'node:os'
import { fileURLToPath } from 'node:url'
import { type FootprintResult, measureFootprint, runSideBySide } from './engine-run.js'

/**
 * `npm run bench`: prefill and decode tokens/s of synthetic ~10M and ~100M models, K = 1 and
 * K = 4 stages in one process side by side, the K4/K1 ratio (goal ≥ 0.97), and each
 * configuration's load time and peak RSS (each measured alone in a child process).
 */
const FOOTPRINT_FLAG = '--footprint'

function footprintChild(model: string, stages: number): FootprintResult {
  const out = execFileSync(
    process.execPath,
    [fileURLToPath(import.meta.url), FOOTPRINT_FLAG, model, String(stages)],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as FootprintResult
}

async function main(): Promise<void> {
  const quick = process.env.BUTTERFLY_BENCH_QUICK === '1'
  const models = quick ? ['synthetic:tiny'] : ['synthetic:10m', 'synthetic:100m']
  const cpu = cpus()
  console.log(
    `# Butterfly engine bench: ${cpu[0]?.model ?? 'cpu'} x ${cpu.length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`,
  )
  console.log(
    '# onnxruntime-node CPU, fp32 weights, greedy, 128-token prompt; medians over rounds after a warm-up',
  )
  console.log('# ratio = median over rounds of (K=4 / K=1), both timed back to back in each round\n')
  console.log(
    [
      'model',
      'K',
      'prefill tok/s',
      'decode tok/s',
      'prefill ratio',
      'decode ratio',
      'load s',
      'peak RSS MiB',
    ].join('\t'),
  )
  for (const model of models) {
    const big = model.endsWith('100m')
    const results = await runSideBySide({
      model,
      stages: [1, 4],
      promptTokens: 128,
      decodeTokens: big ? 48 : 96,
      rounds: big ? 9 : 15,
    })
    for (const r of results) {
      const fp = footprintChild(model, r.stages)
      console.log(
        [
          model,
          r.stages,
          r.prefillTokensPerSec.toFixed(1),
          r.decodeTokensPerSec.toFixed(1),
          r.prefillRatio.toFixed(3),
          r.decodeRatio.toFixed(3),
          fp.loadSeconds.toFixed(2),
          fp.peakRssMiB.toFixed(0),
        ].join('\t'),
      )
    }
  }
}

if (process.argv[2] === FOOTPRINT_FLAG) {
  const result = await measureFootprint(process.argv[3] ?? '', Number(process.argv[4]), 16)
  process.stdout.write(`${JSON.stringify(result)}\n`)
} else {
  await main()
}
