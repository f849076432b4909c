import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// Tests import workspace packages from source so `vitest` needs no build step.
const src = (p: string) => fileURLToPath(new URL(p, import.meta.url))

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
    globalSetup: ['./vitest.global-setup.ts'],
  },
})
