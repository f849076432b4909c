import { ModelFileError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import { expectedWeightShapes } from '../model/weight-names.js'
import type { SafetensorsReader } from '../weights/safetensors.js'
import {
  SAFETENSORS_INDEX_FILE as SAFETENSORS_INDEX,
  type SafetensorsIndex,
} from '../weights/safetensors-index.js'
import type { ImportSource, ImportTensor, ImportTokenizer } from './import-source.js'

/**
 * Which reader holds each tensor the model needs. With an index, each tensor must be in the shard
 * the index names and in no other shard, so a checkpoint cannot be ambiguous about a weight.
 */
export function locateTensors(
  config: ModelConfig,
  readers: ReadonlyMap<string, SafetensorsReader>,
  index?: SafetensorsIndex,
): Map<string, SafetensorsReader> {
  const out = new Map<string, SafetensorsReader>()
  for (const name of expectedWeightShapes(config).keys()) {
    const holders = [...readers.values()].filter((r) => r.has(name))
    const wanted = index?.weightMap.get(name)
    if (index !== undefined && wanted === undefined) {
      throw new ModelFileError('ERR_MODEL_TENSOR_MISSING', SAFETENSORS_INDEX, 'tensor not in weight_map', {
        tensor: name,
      })
    }
    const reader = wanted === undefined ? holders[0] : readers.get(wanted)
    if (reader === undefined || !reader.has(name)) {
      const file = wanted ?? [...readers.values()][0]?.name ?? 'model.safetensors'
      throw new ModelFileError('ERR_MODEL_TENSOR_MISSING', file, 'tensor not in file', { tensor: name })
    }
    if (holders.length > 1) {
      const files = holders.map((r) => r.name).join(' and ')
      throw new ModelFileError(
        'ERR_MODEL_FILE_HEADER',
        reader.name,
        `tensor is in more than one shard (${files})`,
        {
          tensor: name,
        },
      )
    }
    out.set(name, reader)
  }
  return out
}

/**
 * A Hugging Face Llama-family checkpoint as an import source. HF checkpoints are already in
 * rotate_half layout, so tensors pass through unchanged (F32, F16 or BF16, checked by shape).
 */
export function hfImportSource(
  config: ModelConfig,
  located: ReadonlyMap<string, SafetensorsReader>,
  tokenizer?: ImportTokenizer,
): ImportSource {
  const tensors: ImportTensor[] = []
  for (const [name, shape] of expectedWeightShapes(config)) {
    const reader = located.get(name)
    if (reader === undefined) {
      throw new ModelFileError('ERR_MODEL_TENSOR_MISSING', 'model.safetensors', 'tensor not located', {
        tensor: name,
      })
    }
    const info = reader.info(name)
    const expect = { dtype: ['F32', 'F16', 'BF16'] as const, shape }
    if (!expect.dtype.includes(info.dtype as 'F32')) {
      throw new ModelFileError(
        'ERR_MODEL_FILE_DTYPE',
        reader.name,
        `dtype ${info.dtype} is not supported (F32, F16 or BF16)`,
        {
          tensor: name,
        },
      )
    }
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      const msg = `expected shape [${shape.join(', ')}], file has [${info.shape.join(', ')}]`
      throw new ModelFileError('ERR_MODEL_FILE_SHAPE', reader.name, msg, { tensor: name })
    }
    tensors.push({
      name,
      shape,
      sourceType: info.dtype,
      sourceBytes: info.end - info.begin,
      read: (signal) => reader.read(name, expect, signal),
    })
  }
  return tokenizer === undefined
    ? { format: 'hf', config, tensors }
    : { format: 'hf', config, tensors, tokenizer }
}
