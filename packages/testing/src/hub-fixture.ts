import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { syntheticConfig } from '@butterfly/core'
import { resolveModelDir } from '@butterfly/node-platform'
import { filesOf, startTestHub, type TestHub } from './hub-server.js'
import { writeShardedModel } from './sharded-model.js'

/** A running test hub with the synthetic 'tiny' model's files ready to publish. */
export interface HubFixture {
  readonly hub: TestHub
  /** A fresh temporary directory, removed by close(). */
  readonly work: string
  /** synthetic:tiny as one model.safetensors (config, tokenizer, weights), by file name. */
  readonly single: Map<string, Uint8Array>
  /** The same model as two safetensors shards (shardName(0, 2), shardName(1, 2)) and their index. */
  readonly sharded: Map<string, Uint8Array>
  /** A new, not yet created, cache directory under `work` on every call. */
  freshCache(): string
  /** Stops the hub and removes `work`. */
  close(): Promise<void>
}

/**
 * Starts a test hub (no repositories yet: add them with `hub.addRepo`) and writes synthetic:tiny,
 * single-file and sharded, under a fresh temporary directory named from `prefix`.
 */
export async function startHubFixture(prefix: string): Promise<HubFixture> {
  const work = await mkdtemp(join(tmpdir(), prefix))
  const singleDir = await resolveModelDir('synthetic:tiny', join(work, 'src'))
  await writeShardedModel(syntheticConfig('tiny'), singleDir, join(work, 'sharded'))
  const single = await filesOf(singleDir)
  const sharded = await filesOf(join(work, 'sharded'))
  const hub = await startTestHub()
  let caches = 0
  return {
    hub,
    work,
    single,
    sharded,
    freshCache: () => join(work, `cache-${caches++}`),
    async close() {
      await hub.close()
      await rm(work, { recursive: true, force: true })
    },
  }
}
