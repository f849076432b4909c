import {
  type DType,
  encodeLinearWeight,
  isInt4Weight,
  linearWeightSpecs,
  type ModelConfig,
  type RawTensor,
  toFloat32,
  withInt4Quantization,
} from '@butterfly/core'
import { ImportError } from '../errors.js'

/** `--dtype` values of `butterfly-worker import`. */
export const IMPORT_DTYPES = ['fp32', 'fp16', 'int4'] as const
export type ImportDtype = (typeof IMPORT_DTYPES)[number]

/** One safetensors entry the writer emits for a model tensor. */
export interface OutputEntry {
  readonly name: string
  readonly dtype: DType
  readonly shape: readonly number[]
}

/**
 * Everything the import writer knows about output formats lives here: which entries a tensor
 * becomes and how its bytes are encoded. int4 stores the linear projections as MatMulNBits
 * blocks (several entries per weight: levels and scales) and every other tensor as F16, as
 * `synthetic:NAME:int4` does. `config` is the output config (outputConfig).
 */
export function outputEntries(
  config: ModelConfig,
  name: string,
  shape: readonly number[],
  dtype: ImportDtype,
): OutputEntry[] {
  return linearWeightSpecs(name, shape, storedDtype(config, name, dtype))
}

/** The config.json to write for `dtype`: int4 records its quantization_config. */
export function outputConfig(config: ModelConfig, dtype: ImportDtype): ModelConfig {
  if (dtype !== 'int4') return config
  return config.quantization === undefined ? withInt4Quantization(config) : config
}

/** Encodes one tensor for `dtype`; one Uint8Array per entry of outputEntries, in that order. */
export function encodeOutput(
  config: ModelConfig,
  name: string,
  tensor: RawTensor,
  dtype: ImportDtype,
): Uint8Array[] {
  const target = storedDtype(config, name, dtype)
  if (tensor.dtype === target) return [tensor.data]
  const values = toFloat32(tensor)
  if (target !== 'F32') checkHalfRange(name, values)
  return encodeLinearWeight(name, values, tensor.shape, target).map((e) => e.data)
}

/** Fails early, before any file is written, when this build cannot produce `dtype`. */
export function checkOutputDtype(dtype: ImportDtype): void {
  if (!(IMPORT_DTYPES as readonly string[]).includes(dtype)) {
    throw new ImportError(
      'ERR_IMPORT_UNSUPPORTED',
      `--dtype ${String(dtype)} is not supported (fp32, fp16 or int4)`,
    )
  }
}

function storedDtype(config: ModelConfig, name: string, dtype: ImportDtype): 'F32' | 'F16' | 'int4' {
  checkOutputDtype(dtype)
  if (dtype === 'fp32') return 'F32'
  if (dtype === 'fp16') return 'F16'
  return isInt4Weight(config, name) ? 'int4' : 'F16'
}

/** Largest finite float16 plus half an ulp: anything at or past it rounds to infinity. */
const HALF_OVERFLOW = 65520

/** int4 scales are F16 too; checking an int4 weight like an F16 one is stricter than needed (safe). */
function checkHalfRange(name: string, values: Float32Array): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number
    if (Math.abs(v) >= HALF_OVERFLOW && Number.isFinite(v)) {
      throw new ImportError(
        'ERR_IMPORT_RANGE',
        `tensor ${name} holds ${v} at element ${i}, beyond float16's range; use --dtype fp32`,
      )
    }
  }
}
