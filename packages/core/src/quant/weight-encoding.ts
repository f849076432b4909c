import { TensorError, type TensorErrorCode } from '../errors.js'
import type { ModelConfig, WeightQuantization } from '../model/model-config.js'
import { LM_HEAD } from '../model/weight-names.js'
import { fromFloat32, toFloat32 } from '../weights/float16.js'
import type { DType, RawTensor } from '../weights/tensor.js'
import type { WeightProvider } from '../weights/weight-provider.js'
import { dequantizeInt4, INT4_DEFAULT_BLOCK_SIZE, int4Shapes, quantizeInt4 } from './int4.js'

/**
 * How model tensors are stored in model.safetensors, float or int4, and back.
 *
 * An int4 weight `X.weight` [N, K] is stored as two ordinary safetensors entries, so the file
 * stays a valid safetensors file that any reader can list: `X.weight.qweight` (U8 [N, K/32, 16],
 * MatMulNBits' packing) and `X.weight.scales` (F16 [N, K/32]). Which tensors are int4 follows
 * from config.json's quantization_config alone, so the graph builder, the memory planner and
 * the downloader all know without opening the file.
 */

/** The weight formats a model directory can be written in. */
export type WeightDtype = 'F32' | 'F16' | 'BF16' | 'int4'

/** Stored-name suffixes of an int4 weight. */
export const INT4_QWEIGHT_SUFFIX = '.qweight'
export const INT4_SCALES_SUFFIX = '.scales'

/** The quantization_config `--dtype int4` writes: block 32, symmetric, float LM head. */
export const DEFAULT_INT4_QUANTIZATION: WeightQuantization = {
  method: 'int4',
  bits: 4,
  blockSize: INT4_DEFAULT_BLOCK_SIZE,
  lmHead: false,
}

const PROJECTION =
  /^model\.layers\.\d+\.(self_attn\.([qkvo]|qkv)_proj|mlp\.(gate|up|down|gate_up)_proj)\.weight$/

/** Whether `name` (a logical tensor name such as `model.layers.0.mlp.up_proj.weight`) is int4 under `config`. */
export function isInt4Weight(config: ModelConfig, name: string): boolean {
  const q = config.quantization
  if (q === undefined) return false
  if (PROJECTION.test(name)) return true
  return name === LM_HEAD && q.lmHead && !config.tieWordEmbeddings
}

/** The entries a logical tensor occupies in the file: itself, or its qweight and scales. */
export function int4TensorNames(name: string): { qweight: string; scales: string } {
  return { qweight: `${name}${INT4_QWEIGHT_SUFFIX}`, scales: `${name}${INT4_SCALES_SUFFIX}` }
}

/** Stored names of a logical tensor under `config` (for downloads and progress). */
export function storedTensorNames(config: ModelConfig, name: string): string[] {
  if (!isInt4Weight(config, name)) return [name]
  const n = int4TensorNames(name)
  return [n.qweight, n.scales]
}

/** Dtypes a reader should accept for a stored tensor name; float entries may be F32, F16 or BF16. */
export function storedTensorDtypes(name: string, floats: readonly DType[] = ['F32', 'F16', 'BF16']): DType[] {
  if (name.endsWith(`.weight${INT4_QWEIGHT_SUFFIX}`)) return ['U8']
  if (name.endsWith(`.weight${INT4_SCALES_SUFFIX}`)) return ['F16', 'F32']
  return [...floats]
}

/** A safetensors entry without its bytes: what safetensorsLayout needs up front. */
export interface StoredTensorSpec {
  readonly name: string
  readonly dtype: DType
  readonly shape: readonly number[]
}

/**
 * The entries `encodeLinearWeight` will produce, without computing them, so a writer can lay out
 * the header before streaming tensors one at a time.
 */
export function linearWeightSpecs(
  name: string,
  shape: readonly number[],
  dtype: WeightDtype,
  blockSize = INT4_DEFAULT_BLOCK_SIZE,
): StoredTensorSpec[] {
  if (dtype !== 'int4') return [{ name, dtype, shape }]
  const [n, k] = matrixShape(name, shape)
  const s = int4Shapes(n, k, blockSize)
  const names = int4TensorNames(name)
  return [
    { name: names.qweight, dtype: 'U8', shape: s.qweight },
    { name: names.scales, dtype: 'F16', shape: s.scales },
  ]
}

/**
 * Encodes one tensor (row-major float32 values) for model.safetensors. 'int4' quantises an
 * [N, K] linear weight to its qweight and scales entries; the float dtypes give one entry. The
 * importer writes every tensor through this: int4 for the tensors isInt4Weight selects, the
 * rest as F16 (or whichever float dtype it chose).
 */
export function encodeLinearWeight(
  name: string,
  data: Float32Array,
  shape: readonly number[],
  dtype: WeightDtype,
  blockSize = INT4_DEFAULT_BLOCK_SIZE,
): Array<StoredTensorSpec & RawTensor> {
  if (dtype !== 'int4') return [{ name, dtype, shape, data: fromFloat32(data, dtype) }]
  const [n, k] = matrixShape(name, shape)
  let q: ReturnType<typeof quantizeInt4>
  try {
    q = quantizeInt4(data, n, k, blockSize)
  } catch (err) {
    if (err instanceof TensorError)
      throw new TensorError(err.code as TensorErrorCode, `tensor ${name}: ${err.message}`)
    throw err
  }
  const [qSpec, sSpec] = linearWeightSpecs(name, shape, 'int4', blockSize) as [
    StoredTensorSpec,
    StoredTensorSpec,
  ]
  return [
    { ...qSpec, data: q.qweight },
    { ...sSpec, data: fromFloat32(q.scales, 'F16') },
  ]
}

/** The config with int4 weights marked (the default block size, float LM head unless asked). */
export function withInt4Quantization(
  config: ModelConfig,
  options: Partial<Pick<WeightQuantization, 'blockSize' | 'lmHead'>> = {},
): ModelConfig {
  return { ...config, quantization: { ...DEFAULT_INT4_QUANTIZATION, ...options } }
}

/**
 * Reads a logical tensor as float32 whatever its storage: int4 weights come back dequantised,
 * exactly the values MatMulNBits computes with. The reference forward pass and calibration use it.
 */
export async function readDequantized(
  config: ModelConfig,
  weights: WeightProvider,
  name: string,
  shape: readonly number[],
): Promise<Float32Array> {
  if (!isInt4Weight(config, name)) return Float32Array.from(toFloat32(await weights(name, shape)))
  const q = await readInt4(config, weights, name, shape)
  return dequantizeInt4(q)
}

/** Fetches and checks an int4 weight's two entries. */
export async function readInt4(
  config: ModelConfig,
  weights: WeightProvider,
  name: string,
  shape: readonly number[],
): Promise<{
  n: number
  k: number
  blockSize: number
  blocks: number
  qweight: Uint8Array
  scales: Float32Array
}> {
  const blockSize = config.quantization?.blockSize ?? INT4_DEFAULT_BLOCK_SIZE
  const [n, k] = matrixShape(name, shape)
  const s = int4Shapes(n, k, blockSize)
  const names = int4TensorNames(name)
  const qt = await weights(names.qweight, s.qweight)
  const st = await weights(names.scales, s.scales)
  checkEntry(names.qweight, qt, ['U8'], s.qweight)
  checkEntry(names.scales, st, ['F16', 'F32'], s.scales)
  const scales = Float32Array.from(toFloat32(st))
  return { n, k, blockSize, blocks: s.scales[1], qweight: qt.data, scales }
}

function checkEntry(name: string, t: RawTensor, dtypes: readonly DType[], shape: readonly number[]): void {
  if (!dtypes.includes(t.dtype)) {
    throw new TensorError(
      'ERR_TENSOR_DTYPE',
      `tensor ${name}: expected ${dtypes.join(' or ')}, got ${t.dtype}`,
    )
  }
  const same = t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i])
  const bytes = shape.reduce((a, b) => a * b, 1) * (t.dtype === 'U8' ? 1 : t.dtype === 'F16' ? 2 : 4)
  if (!same || t.data.byteLength !== bytes) {
    throw new TensorError(
      'ERR_TENSOR_SHAPE',
      `tensor ${name}: expected shape [${shape.join(', ')}] (${bytes} bytes), got [${t.shape.join(', ')}] (${t.data.byteLength} bytes)`,
    )
  }
}

function matrixShape(name: string, shape: readonly number[]): [number, number] {
  const [n, k] = shape
  if (shape.length !== 2 || n === undefined || k === undefined) {
    throw new TensorError(
      'ERR_TENSOR_SHAPE',
      `tensor ${name}: int4 needs a 2-D [out, in] weight, got [${shape.join(', ')}]`,
    )
  }
  return [n, k]
}
