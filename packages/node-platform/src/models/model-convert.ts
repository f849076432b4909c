import { randomBytes } from 'node:crypto'
import { copyFile, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  encodeLinearWeight,
  expectedWeightShapes,
  isInt4Weight,
  linearWeightSpecs,
  type ModelConfig,
  ModelConfigError,
  modelConfigToJson,
  parseModelConfig,
  safetensorsLayout,
  toFloat32,
  withInt4Quantization,
} from '@butterfly/core'
import { ModelNotFoundError } from '../errors.js'
import { openLocalWeights } from './local-weights.js'

/** What a model directory's weights are written as: float everywhere, or int4 projections + F16. */
export type ModelDtype = 'F32' | 'F16' | 'int4'

/**
 * Writes model.safetensors for `config` at `path`, one tensor at a time (a multi-GB model never
 * sits in memory whole): the tensors isInt4Weight selects as int4 (qweight + scales entries),
 * every other tensor as `dtype`, or F16 when `dtype` is 'int4'. `values` gives a tensor's
 * row-major float32 values.
 */
export async function writeWeightsFile(
  path: string,
  config: ModelConfig,
  dtype: ModelDtype,
  values: (name: string, shape: readonly number[]) => Promise<Float32Array> | Float32Array,
): Promise<void> {
  const blockSize = config.quantization?.blockSize
  const specs = [...expectedWeightShapes(config)].map(([name, shape]) => ({
    name,
    shape,
    format: isInt4Weight(config, name) ? ('int4' as const) : dtype === 'int4' ? ('F16' as const) : dtype,
  }))
  const layout = safetensorsLayout(
    specs.flatMap((s) => linearWeightSpecs(s.name, s.shape, s.format, blockSize)),
  )
  const file = await open(path, 'w')
  try {
    await file.write(layout.header)
    for (const s of specs) {
      const data = await values(s.name, s.shape)
      for (const e of encodeLinearWeight(s.name, data, s.shape, s.format, blockSize)) await file.write(e.data)
    }
  } finally {
    await file.close()
  }
}

/**
 * Re-encodes a float model directory (config.json, tokenizer files, model.safetensors in
 * F32/F16/BF16) as `dtype` into `outDir`, atomically (temp dir + rename). 'int4' marks
 * config.json with quantization_config. Used by the quantisation bench to compare fp32, fp16 and
 * int4 copies of one trained model; an int4 directory cannot be the source (its float values
 * are gone).
 */
export async function convertModelDir(srcDir: string, outDir: string, dtype: ModelDtype): Promise<void> {
  const configPath = join(srcDir, 'config.json')
  let json: Record<string, unknown>
  try {
    json = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>
  } catch (err) {
    throw new ModelNotFoundError(`${configPath} cannot be read as JSON: ${(err as Error).message}`)
  }
  const config = parseModelConfig(json, configPath)
  if (config.quantization !== undefined) {
    throw new ModelConfigError(`${configPath}: the model is already int4; convert from its float checkpoint`)
  }
  const out = dtype === 'int4' ? withInt4Quantization(config) : config
  const tmp = `${outDir}.tmp-${randomBytes(4).toString('hex')}`
  await mkdir(tmp, { recursive: true })
  // Single-file or sharded: the output is always one model.safetensors.
  const reader = await openLocalWeights(srcDir)
  try {
    await writeFile(
      join(tmp, 'config.json'),
      `${JSON.stringify({ ...json, ...modelConfigToJson(out) }, null, 2)}\n`,
    )
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
      if (await stat(join(srcDir, f)).catch(() => undefined)) await copyFile(join(srcDir, f), join(tmp, f))
    }
    await writeWeightsFile(join(tmp, 'model.safetensors'), out, dtype, async (name, shape) =>
      // A copy: toFloat32 of F32 is a view of the read buffer.
      Float32Array.from(toFloat32(await reader.read(name, { dtype: ['F32', 'F16', 'BF16'], shape }))),
    )
    await rm(outDir, { recursive: true, force: true })
    await rename(tmp, outDir)
  } catch (err) {
    await rm(tmp, { recursive: true, force: true })
    throw err
  } finally {
    await reader.close()
  }
}
