import { join } from 'node:path'
import type { StageCache } from '@butterfly/core'
import { CliUsageError, cacheDir, createStageCacheDir } from '@butterfly/node-platform'
import { Option } from 'commander'
import { sizeArg } from '../cli-args.js'

export interface StageCacheFlags {
  /** A directory, or 'off'; default $BUTTERFLY_CACHE_DIR/stages. */
  readonly stageCache?: string
  readonly stageCacheMax?: number
}

/** `--stage-cache` and `--stage-cache-max`, the same on `generate` and `join`. */
export function stageCacheOptions(): Option[] {
  return [
    new Option(
      '--stage-cache <dir|off>',
      'keep built stages (pre-packed for this CPU) so a restart loads without building or downloading; default <cache>/stages',
    ).env('BUTTERFLY_STAGE_CACHE'),
    new Option(
      '--stage-cache-max <size>',
      'most disk the stage cache takes; least recently used stages go first (default 8GB)',
    ).argParser(sizeArg('--stage-cache-max', 0, '8GB or 0')),
  ]
}

/** The cache the flags ask for; undefined for 'off' or a zero size. */
export function stageCacheOf(flags: StageCacheFlags): StageCache | undefined {
  if (flags.stageCache === 'off' || flags.stageCacheMax === 0) return undefined
  if (flags.stageCache === '') throw new CliUsageError('--stage-cache needs a directory or "off"')
  return createStageCacheDir({
    dir: flags.stageCache ?? join(cacheDir(), 'stages'),
    ...(flags.stageCacheMax === undefined ? {} : { maxBytes: flags.stageCacheMax }),
  })
}

/** The backend init's `stageCache`, spread in. */
export function withStageCache(flags: StageCacheFlags): { stageCache?: StageCache } {
  const stageCache = stageCacheOf(flags)
  return stageCache === undefined ? {} : { stageCache }
}
