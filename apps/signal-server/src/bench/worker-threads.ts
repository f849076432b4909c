import { availableParallelism } from 'node:os'

/**
 * Each embedded-model bench worker's `--threads`: BUTTERFLY_BENCH_WORKER_THREADS=N, or `auto` for
 * onnxruntime's choice (a thread per core in every worker); by default the machine's cores split
 * between the two workers, as an operator running several workers on one machine splits them.
 * Why: on a shared machine each worker's pool of threads contends with the other worker and the
 * server for the same cores (measured on the 2-core VM: about a third less throughput under 64
 * streams with a thread per core in each worker).
 */
function workerThreads(): number | 'auto' {
  const env = process.env.BUTTERFLY_BENCH_WORKER_THREADS
  if (env === 'auto') return 'auto'
  if (env !== undefined && env !== '') {
    const n = Number(env)
    if (!(Number.isInteger(n) && n >= 1))
      throw new Error('BUTTERFLY_BENCH_WORKER_THREADS: a whole number >= 1, or auto')
    return n
  }
  return Math.max(1, Math.floor(availableParallelism() / 2))
}

export function workerThreadArgs(): string[] {
  const threads = workerThreads()
  return threads === 'auto' ? [] : ['--threads', String(threads)]
}

export function describeThreads(): string {
  const threads = workerThreads()
  return threads === 'auto'
    ? "each worker at onnxruntime's thread count"
    : `each worker --threads ${threads} (${availableParallelism()} cores here)`
}
