import { planBenchmark } from '@butterfly/core'
import { transportBench } from '@butterfly/node-worker'
import { describeMachine, meshBench } from './mesh-bench.js'

/**
 * The mesh half of `npm run bench`: WebRTC transport figures, placement time for 100 peers ×
 * 80 layers, and decode tokens/s through 2 and 4 worker processes against one process.
 */
async function main(): Promise<void> {
  const quick = process.env.BUTTERFLY_BENCH_QUICK === '1'
  console.log(`\n# Butterfly mesh bench: ${describeMachine()}, loopback only`)
  console.log('\n## WebRTC data channels (node-datachannel vs @roamhq/wrtc)')
  for (const line of await transportBench(quick ? { bytes: 8 * 2 ** 20, pings: 200 } : {})) console.log(line)

  const plan = planBenchmark()
  console.log(
    `\n## Placement: throughput-optimal plan for ${plan.peers} peers x ${plan.layers} layers: median ${plan.medianMs.toFixed(2)} ms over ${plan.runs} runs (goal < 50 ms)`,
  )

  const model = quick ? 'synthetic:tiny' : 'synthetic:100m'
  console.log(
    `\n## Mesh vs single process: ${model}, greedy, 64-token prompt; medians over rounds, run round-robin`,
  )
  const rows = await meshBench({
    model,
    workerCounts: quick ? [2] : [2, 4],
    promptTokens: 64,
    decodeTokens: quick ? 16 : 32,
    rounds: quick ? 2 : 5,
  })
  console.log(
    [
      'workers',
      'mesh decode tok/s',
      'single decode tok/s',
      'ratio (goal >= 0.95)',
      'mesh prefill tok/s',
    ].join('\t'),
  )
  for (const r of rows) {
    console.log(
      [
        r.workers,
        r.meshDecodeTokensPerSec.toFixed(1),
        r.singleDecodeTokensPerSec.toFixed(1),
        r.ratio.toFixed(3),
        r.meshPrefillTokensPerSec.toFixed(1),
      ].join('\t'),
    )
  }
}

await main()
