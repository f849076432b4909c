import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  bytesSource,
  byteTokenizerJson,
  encodeSafetensors,
  type ModelConfig,
  modelConfigToJson,
  parseModelConfig,
  SafetensorsReader,
  toFloat32,
} from '@butterfly/core'
import { TrainError } from './errors.js'
import { ParamLayout } from './param-layout.js'

/**
 * Writes an ordinary Butterfly / Hugging Face model directory: config.json, tokenizer.json (the
 * byte tokenizer) and model.safetensors (F32, HF tensor names, tied head so no lm_head). Each
 * file goes to a temporary name first so a crash never leaves a half-written model.
 */
export async function writeModelDir(
  dir: string,
  config: ModelConfig,
  params: Float32Array,
  metadata: Record<string, string> = {},
): Promise<void> {
  const layout = new ParamLayout(config)
  if (params.length !== layout.size) {
    throw new TrainError('ERR_TRAIN_OUTPUT', `expected ${layout.size} parameters, got ${params.length}`)
  }
  const tensors = [...layout.tensors(params)].map(([name, t]) => ({
    name,
    dtype: 'F32' as const,
    shape: t.shape,
    // safetensors is little-endian, as Float32Array is on every platform Node supports.
    data: new Uint8Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength)),
  }))
  const files: Array<[string, string | Uint8Array]> = [
    ['config.json', `${JSON.stringify(modelConfigToJson(config), null, 2)}\n`],
    ['tokenizer.json', `${JSON.stringify(byteTokenizerJson(config.vocabSize))}\n`],
    ['model.safetensors', encodeSafetensors(tensors, { format: 'pt', ...metadata })],
  ]
  try {
    await mkdir(dir, { recursive: true })
    for (const [name, data] of files) {
      const tmp = join(dir, `.${name}.tmp`)
      await writeFile(tmp, data)
      await rename(tmp, join(dir, name))
    }
  } catch (err) {
    throw new TrainError('ERR_TRAIN_OUTPUT', `cannot write ${dir}: ${(err as Error).message}`, { cause: err })
  }
}

/** Reads a model directory written by writeModelDir back into a config and a flat parameter vector. */
export async function readModelDir(dir: string): Promise<{ config: ModelConfig; params: Float32Array }> {
  const configFile = join(dir, 'config.json')
  const config = parseModelConfig(JSON.parse(await readFile(configFile, 'utf8')), configFile)
  const weightsFile = join(dir, 'model.safetensors')
  const bytes = new Uint8Array(await readFile(weightsFile))
  const reader = await SafetensorsReader.open(bytesSource(weightsFile, bytes))
  const layout = new ParamLayout(config)
  const weights = new Map<string, Float32Array>()
  for (const [name, { shape }] of layout.tensors(new Float32Array(layout.size))) {
    weights.set(name, toFloat32(await reader.read(name, { dtype: ['F32', 'F16', 'BF16'], shape })))
  }
  return { config, params: layout.pack(weights, weightsFile) }
}
