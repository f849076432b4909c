import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'
import type { Reporter, TestModule } from 'vitest/node'

// Tests import workspace packages from source so `vitest` needs no build step.
const src = (p: string) => fileURLToPath(new URL(p, import.meta.url))

// A test process that dies (a native crash, an OOM kill) is reported by vitest only as "Worker
// exited unexpectedly", without the file. This names every file that did not pass, with where
// its tests stood, at the very end, where a CI log's tail shows it.
const unfinished: Reporter = {
  onTestRunEnd(modules: ReadonlyArray<TestModule>) {
    for (const m of modules) {
      const state = m.state()
      if (state === 'passed' || state === 'skipped') continue
      const counts = new Map<string, number>()
      for (const t of m.children.allTests())
        counts.set(t.result().state, (counts.get(t.result().state) ?? 0) + 1)
      const tests = [...counts].map(([k, n]) => `${n} ${k}`).join(', ')
      console.log(`not passed: ${m.relativeModuleId} (${state}; tests: ${tests || 'none collected'})`)
    }
  },
}

export default defineConfig({
  resolve: {
    alias: {
      '@butterfly/core': src('./packages/core/src/index.ts'),
      // Subpaths before the package name, which would also match them (first match wins).
      '@butterfly/node-platform/bench': src('./packages/node-platform/src/bench/index.ts'),
      '@butterfly/node-platform/cli': src('./packages/node-platform/src/cli.ts'),
      '@butterfly/node-platform': src('./packages/node-platform/src/index.ts'),
      '@butterfly/node-worker': src('./packages/node-worker/src/index.ts'),
      // Before '@butterfly/testing', which would otherwise match its subpath too.
      '@butterfly/testing/node': src('./packages/testing/src/node.ts'),
      '@butterfly/testing': src('./packages/testing/src/index.ts'),
    },
  },
  test: {
    include: [
      'packages/*/test/**/*.test.ts',
      'apps/*/test/**/*.test.ts',
      'e2e/**/*.test.ts',
      'scripts/test/**/*.test.ts',
    ],
    testTimeout: 120_000,
    hookTimeout: 240_000,
    pool: 'forks',
    reporters: ['default', unfinished],
    globalSetup: ['./vitest.global-setup.ts'],
  },
})
