import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'

// Test-only worker processes (packages/testing/src/fixtures) are compiled once per run to
// .cache/test-fixtures (fixtures/faulty-worker.js: FAULTY_WORKER_BIN in @butterfly/testing/node),
// so suites can spawn them like the real CLI.
export default function setup(): void {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.fixtures.json'], { stdio: 'inherit' })
}
