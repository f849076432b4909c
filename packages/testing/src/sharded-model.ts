import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  fromFloat32,
  type ModelConfig,
  SAFETENSORS_INDEX_FILE,
  safetensorsLayout,
  syntheticTensor,
  syntheticTensorSpecs,
} from '@butterfly/core'

/** Which of two shards a tensor goes to: embeddings and layers below `split` in the first. */
export function twoShardsAt(config: ModelConfig, split = Math.floor(config.numLayers / 2)) {
  return (name: string): number => {
    const m = /^model\.layers\.(\d+)\./.exec(name)
    if (m !== null) return Number(m[1]) < split ? 0 : 1
    return name === 'model.embed_tokens.weight' ? 0 : 1
  }
}

export const shardName = (i: number, n: number) =>
  `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`

/**
 * Writes the synthetic model `config` as a sharded checkpoint next to the config and tokenizer
 * copied from `singleDir` (a writeSyntheticModel directory): `shards` files chosen by `shardOf`,
 * and model.safetensors.index.json mapping every tensor to its shard, as Hugging Face writes them.
 */
export async function writeShardedModel(
  config: ModelConfig,
  singleDir: string,
  dir: string,
  shardOf: (name: string) => number = twoShardsAt(config),
  shards = 2,
): Promise<void> {
  await mkdir(dir, { recursive: true })
  for (const f of ['config.json', 'tokenizer.json'])
    await writeFile(join(dir, f), await readFile(join(singleDir, f)))
  const specs = syntheticTensorSpecs(config)
  const weightMap: Record<string, string> = {}
  for (let i = 0; i < shards; i++) {
    const mine = specs.filter((s) => shardOf(s.name) === i)
    const layout = safetensorsLayout(
      mine.map((s) => ({ name: s.name, dtype: 'F32' as const, shape: s.shape })),
    )
    const parts = [layout.header, ...mine.map((s) => fromFloat32(syntheticTensor(config, s.name), 'F32'))]
    await writeFile(join(dir, shardName(i, shards)), Buffer.concat(parts))
    for (const s of mine) weightMap[s.name] = shardName(i, shards)
  }
  const index = { metadata: { total_size: 0 }, weight_map: weightMap }
  await writeFile(join(dir, SAFETENSORS_INDEX_FILE), JSON.stringify(index, null, 2))
}
