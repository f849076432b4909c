import { createHash } from 'node:crypto'
import { readdir, readFile, realpath, stat } from 'node:fs/promises'
import { join } from 'node:path'
import {
  MAX_INDEX_BYTES,
  ModelFileError,
  parseSafetensorsIndexBytes,
  SAFETENSORS_FILE,
  SAFETENSORS_INDEX_FILE,
  ShardedSafetensors,
} from '@butterfly/core'
import { ModelNotFoundError } from '../errors.js'
import { FileSource } from './file-source.js'

/**
 * The weights of a model directory: `model.safetensors.index.json` and its shards when the
 * index exists, else `model.safetensors`. Every header is read and every index entry checked
 * against its shard before this returns, so a broken checkpoint fails at load, naming the file.
 */
export async function openLocalWeights(dir: string): Promise<ShardedSafetensors> {
  const indexPath = join(dir, SAFETENSORS_INDEX_FILE)
  const indexStat = await stat(indexPath).catch(() => undefined)
  let weights: ShardedSafetensors
  if (indexStat === undefined) {
    const path = join(dir, SAFETENSORS_FILE)
    if (!(await isFile(path))) {
      throw new ModelNotFoundError(`${path} does not exist (nor does ${SAFETENSORS_INDEX_FILE})`)
    }
    weights = ShardedSafetensors.single(() => FileSource.open(path))
  } else {
    if (indexStat.size > MAX_INDEX_BYTES) {
      throw new ModelFileError(
        'ERR_MODEL_INDEX',
        indexPath,
        `is ${indexStat.size} bytes, over the cap of ${MAX_INDEX_BYTES}`,
      )
    }
    const index = parseSafetensorsIndexBytes(await readFile(indexPath), indexPath)
    weights = ShardedSafetensors.sharded(
      index,
      async (file) => {
        const path = join(dir, file)
        if (!(await isFile(path)))
          throw new ModelNotFoundError(`${path}, named by ${indexPath}, does not exist`)
        return FileSource.open(path)
      },
      indexPath,
    )
  }
  try {
    await weights.verify()
    return weights
  } catch (err) {
    await weights.close()
    throw err
  }
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() === true
}

/**
 * Names a directory's weights without reading them: the directory's real path and each
 * safetensors file's (and the index's) name, size and modification time in nanoseconds, as
 * make judges files. A file rewritten in place changes its time, so a cache keyed on this
 * never serves a stage built from the old weights.
 */
export async function localWeightsFingerprint(dir: string): Promise<string> {
  const hash = createHash('sha256').update(await realpath(dir))
  for (const name of (await readdir(dir)).sort()) {
    if (!(name.endsWith('.safetensors') || name === SAFETENSORS_INDEX_FILE)) continue
    const s = await stat(join(dir, name), { bigint: true })
    hash.update(`\n${name}\t${s.size}\t${s.mtimeNs}\t${s.ino}`)
  }
  return hash.digest('hex')
}
