import { test } from 'vitest'
import { transportBench } from '../src/bench/transport-bench.js'

test('bench', async () => {
  for (const hwm of [256 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024]) {
    const lines = await transportBench({ highWaterMark: hwm, pings: 300 })
    console.log(lines.slice(1).join('\n'))
  }
}, 300_000)
