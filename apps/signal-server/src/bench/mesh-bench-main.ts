import { encodeMessage, measureComparator, planBenchmark } from '@butterfly/core'
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

  // Result verification: comparator cost at the 100m model's hidden size, and wire bytes per
  // decode token for one replica against three (full hidden states from every replica).
  const hidden = 768
  const stats = measureComparator({ hiddenSize: hidden, now: () => performance.now() })
  console.log(
    `\n## Verification (hidden ${hidden}): false positives ${(stats.falsePositiveRate * 100).toFixed(2)}% of ${stats.honest.comparisons}, ` +
      `false negatives ${(stats.falseNegativeRate * 100).toFixed(2)}% of ${stats.lies.comparisons}; ` +
      `per comparison: full vs full ${stats.micros.compareHidden.toFixed(1)} µs, fingerprint ${stats.micros.fingerprint.toFixed(1)} µs + check ${stats.micros.compareToFingerprint.toFixed(1)} µs, fingerprint ${stats.fingerprintBytes} B`,
  )
  const step = (h: Float32Array) =>
    encodeMessage({
      type: 'StepRequest',
      generationId: 'g',
      stepIndex: 1,
      startPos: 1,
      seqLen: 1,
      temperature: 0,
      deadlineMs: 0,
      hidden: h,
    })
  const result = (h: Float32Array) =>
    encodeMessage({ type: 'StepResult', generationId: 'g', stepIndex: 1, hidden: h })
  const bytes = (frames: Uint8Array[]) => frames.reduce((n, f) => n + f.byteLength, 0)
  const perReplica = bytes(step(new Float32Array(hidden))) + bytes(result(new Float32Array(hidden)))
  console.log(
    `   wire bytes per decode token per middle stage: r=1 ${perReplica} B, r=3 ${3 * perReplica} B ` +
      `(r=3 with fingerprints from two replicas: ${perReplica + 2 * (bytes(step(new Float32Array(hidden))) + 64 + stats.fingerprintBytes)} B)`,
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
    // 3 comparisons per replicated step (two replicas against the accepted one).
    const share = (2 * stats.micros.compareHidden) / 1000 / (1000 / r.singleDecodeTokensPerSec / r.workers)
    console.log(
      [
        r.workers,
        r.meshDecodeTokensPerSec.toFixed(1),
        r.singleDecodeTokensPerSec.toFixed(1),
        r.ratio.toFixed(3),
        r.meshPrefillTokensPerSec.toFixed(1),
        `comparator ${(share * 100).toFixed(3)}% of a stage's step`,
      ].join('\t'),
    )
  }
}

await main()
