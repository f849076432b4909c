import { measureComparator, planBenchmark } from '@butterfly/core'
import { transportBench } from '@butterfly/node-platform/bench'
import { concurrencyOptions, concurrencySection } from './concurrency-bench.js'
import { describeMachine, meshBench } from './mesh-bench.js'
import { replicationBench } from './replication-bench.js'
import { lastStageBytesLine, wireBytesLine } from './wire-bytes.js'

/**
 * The mesh half of `npm run bench`: WebRTC transport figures, placement time for 100 peers ×
 * 80 layers, decode tokens/s through 2 and 4 worker processes against one process, replication,
 * and concurrent generations against one alone (the last alone: concurrency-bench-main.js).
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

  // Result verification: comparator cost at the 100m model's hidden size, and wire bytes per
  // decode token for one replica against three (full states, or one full state + fingerprints).
  const hidden = 768
  const stats = measureComparator({ hiddenSize: hidden, now: () => performance.now() })
  console.log(
    `\n## Verification (hidden ${hidden}): false positives ${(stats.falsePositiveRate * 100).toFixed(2)}% of ${stats.honest.comparisons}, ` +
      `false negatives ${(stats.falseNegativeRate * 100).toFixed(2)}% of ${stats.lies.comparisons}; ` +
      `per comparison: full vs full ${stats.micros.compareHidden.toFixed(1)} µs, fingerprint ${stats.micros.fingerprint.toFixed(1)} µs + check ${stats.micros.compareToFingerprint.toFixed(1)} µs, fingerprint ${stats.fingerprintBytes} B`,
  )
  // fp32 is every mesh's default; fp16 is what a mesh started with --wire-dtype fp16 sends.
  console.log(wireBytesLine(hidden, 'fp32'))
  console.log(wireBytesLine(hidden, 'fp16'))
  console.log(lastStageBytesLine())

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
      'mesh decode tok/s (chained)',
      'single decode tok/s',
      'ratio (goal >= 0.9 at 2, 0.85 at 4)',
      'relayed via coordinator tok/s',
      'relayed ratio',
      'mesh prefill tok/s',
    ].join('\t'),
  )
  for (const r of rows) {
    // Per voted middle-stage step the coordinator checks two fingerprints against the full state;
    // each replica fingerprints its own output once. Both against one stage's compute per token.
    const stageStepMicros = (1000 * 1000) / r.singleDecodeTokensPerSec / r.workers
    const coordinator = (2 * stats.micros.compareToFingerprint) / stageStepMicros
    const replica = stats.micros.fingerprint / stageStepMicros
    console.log(
      [
        r.workers,
        r.meshDecodeTokensPerSec.toFixed(1),
        r.singleDecodeTokensPerSec.toFixed(1),
        r.ratio.toFixed(3),
        r.relayedDecodeTokensPerSec.toFixed(1),
        r.relayedRatio.toFixed(3),
        r.meshPrefillTokensPerSec.toFixed(1),
        `comparator ${(coordinator * 100).toFixed(3)}% (coordinator), ${(replica * 100).toFixed(3)}% (replica) of a stage's step`,
      ].join('\t'),
    )
  }

  const replModel = quick ? 'synthetic:tiny' : 'synthetic:10m'
  console.log(
    `\n## Replication: ${replModel}, one stage, greedy; decode tok/s, medians over rounds, run round-robin`,
  )
  const repl = await replicationBench({
    model: replModel,
    promptTokens: 16,
    decodeTokens: quick ? 32 : 64,
    rounds: quick ? 2 : 5,
  })
  console.log(['mesh', 'decode tok/s', 'vs r=1', 'first token ms', 'wire bytes/token'].join('\t'))
  for (const r of repl) {
    console.log(
      [
        r.label,
        r.decodeTokensPerSec.toFixed(1),
        r.ratio.toFixed(3),
        r.ttftMs.toFixed(1),
        r.wireBytesPerToken.toFixed(0),
      ].join('\t'),
    )
  }

  await concurrencySection(concurrencyOptions(quick))
}

await main()
// Native WebRTC threads of peers that were torn down can keep the loop alive a while after the
// last figure; nothing is left to measure, so the bench exits instead of waiting for them.
process.exit(0)
