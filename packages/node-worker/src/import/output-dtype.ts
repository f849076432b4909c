import { type DType, fromFloat32, type ModelConfig, type RawTensor, toFloat32 } from '@butterfly/core'
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
 * becomes and how its bytes are encoded. int4 (MatMulNBits blocks, several entries per linear
 * weight) plugs in here once the quantiser is in this build.
 */
export function outputEntries(name: string, shape: readonly number[], dtype: ImportDtype): OutputEntry[] {
  return [{ name, dtype: storedDtype(dtype), shape }]
}

/** The config.json to write for `dtype` (int4 will record its quantization_config here). */
export function outputConfig(config: ModelConfig, dtype: ImportDtype): ModelConfig {
  storedDtype(dtype)
  return config
}

/** Encodes one tensor for `dtype`; one Uint8Array per entry of outputEntries, in that order. */
export function encodeOutput(name: string, tensor: RawTensor, dtype: ImportDtype): Uint8Array[] {
  const target = storedDtype(dtype)
  if (tensor.dtype === target) return [tensor.data]
  const values = toFloat32(tensor)
  if (target === 'F16') checkHalfRange(name, values)
  return [fromFloat32(values, target)]
}

/** Fails early, before any file is written, when this build cannot produce `dtype`. */
export function checkOutputDtype(dtype: ImportDtype): void {
  storedDtype(dtype)
}

function storedDtype(dtype: ImportDtype): 'F32' | 'F16' {
  if (dtype === 'fp32') return 'F32'
  if (dtype === 'fp16') return 'F16'
  throw new ImportError(
    'ERR_IMPORT_UNSUPPORTED',
    `--dtype ${dtype} is not yet supported in this build (use fp32 or fp16)`,
  )
}

/** Largest finite float16 plus half an ulp: anything at or past it rounds to infinity. */
const HALF_OVERFLOW = 65520

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
