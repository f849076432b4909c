/**
 * @butterfly/node-platform/bench — the pieces of the benchmarks other benchmarks reuse (the
 * server's mesh bench prints the transport numbers). Not part of the main index: benchmarks are
 * programs (engine-bench.js, quant-bench.js), not API.
 */

export { median, percentile } from './stats.js'
export { type TransportBenchOptions, transportBench } from './transport-bench.js'
