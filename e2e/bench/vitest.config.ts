import { defineConfig } from 'vitest/config'
import root from '../../vitest.config.js'

// The benches that need test code (the GGUF writer, the llama.cpp runner): `npm run bench` runs
// them with this config; `npm test` never does (its include has no *.bench.ts).
export default defineConfig({
  ...root,
  test: { ...root.test, include: ['e2e/bench/**/*.bench.ts'], testTimeout: 1_800_000 },
})
