import { concurrencyOptions, concurrencySection } from './concurrency-bench.js'
import { describeMachine } from './mesh-bench.js'

/**
 * The `## Concurrency` section of `npm run bench` alone (BUTTERFLY_BENCH_QUICK=1 for a small
 * version): `node apps/signal-server/dist/bench/concurrency-bench-main.js` after `npx tsc -b`.
 * Exits non-zero when a completion was lost or differed from its prompt run alone.
 */
console.log(`\n# Butterfly concurrency bench: ${describeMachine()}, loopback only`)
await concurrencySection(concurrencyOptions(process.env.BUTTERFLY_BENCH_QUICK === '1'))
// As mesh-bench-main: torn-down WebRTC peers' native threads may keep the loop alive a while.
process.exit(0)
