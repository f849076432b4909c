import { TensorError } from '../errors.js'
import { f16BitsToF32, f32ToF16Bits } from '../weights/float16.js'

/**
 * Blockwise symmetric 4-bit weights in ONNX Runtime's MatMulNBits layout.
 *
 * A linear weight W stored [N, K] (PyTorch [out, in]) is cut along K into blocks of `blockSize`
 * (32 by default). Each block has one scale s and sixteen levels: w ≈ (q − 8) · s with q in
 * [0, 15]. The scale is the block's value of largest magnitude divided by −8 (llama.cpp's Q4_0
 * rule, also ONNX Runtime's symmetric quantiser): that value lands exactly on level 0, every
 * level is used, and the zero point is the fixed 8 that MatMulNBits assumes when no zero-point
 * input is given, so no zero-point tensor is stored.
 *
 * Layout: `qweight` is uint8 [N, blocks, blockSize / 2], two values per byte, the even index
 * of a pair in the low nibble; `scales` is [N, blocks]. When K is not a multiple of the block
 * size the last block is padded with level 8 (the value 0), as MatMulNBits expects.
 */
export interface Int4Weight {
  /** Rows (output features). */
  readonly n: number
  /** Columns (input features), before padding. */
  readonly k: number
  readonly blockSize: number
  /** ceil(k / blockSize). */
  readonly blocks: number
  /** [n, blocks, blockSize / 2] packed levels. */
  readonly qweight: Uint8Array
  /** [n, blocks] scales; with F16 scales each value is exactly a float16. */
  readonly scales: Float32Array
}

export type Int4ScaleDtype = 'F16' | 'F32'

export const INT4_DEFAULT_BLOCK_SIZE = 32
/** MatMulNBits' implicit zero point for 4 bits. */
export const INT4_ZERO_POINT = 8
/** Block sizes MatMulNBits accepts: powers of two from 16. */
const BLOCK_SIZES: readonly number[] = [16, 32, 64, 128, 256]
/** Caps an allocation made from caller-given sizes (2^31 weights: an 8 GiB fp32 matrix). */
const MAX_ELEMENTS = 2 ** 31
/** Largest finite float16. */
const F16_MAX = 65504

export function int4Blocks(k: number, blockSize = INT4_DEFAULT_BLOCK_SIZE): number {
  return Math.ceil(k / blockSize)
}

/** Shapes of the stored tensors of an [n, k] weight. */
export function int4Shapes(
  n: number,
  k: number,
  blockSize = INT4_DEFAULT_BLOCK_SIZE,
): { qweight: [number, number, number]; scales: [number, number] } {
  checkDims(n, k, blockSize)
  const blocks = int4Blocks(k, blockSize)
  return { qweight: [n, blocks, blockSize / 2], scales: [n, blocks] }
}

/** Bytes an [n, k] weight takes as int4 with `scaleBytes`-byte scales (2 on disk, 4 in the graph). */
export function int4Bytes(n: number, k: number, blockSize = INT4_DEFAULT_BLOCK_SIZE, scaleBytes = 2): number {
  const blocks = int4Blocks(k, blockSize)
  return n * blocks * (blockSize / 2 + scaleBytes)
}

/**
 * Quantises a row-major [n, k] float32 weight. With F16 scales (the default) each scale is
 * rounded to float16 before the levels are chosen, so dequantising gives exactly the weights
 * the graph computes with. Quantising a dequantised weight reproduces the same bytes.
 */
export function quantizeInt4(
  weight: Float32Array,
  n: number,
  k: number,
  blockSize = INT4_DEFAULT_BLOCK_SIZE,
  options: { scaleDtype?: Int4ScaleDtype } = {},
): Int4Weight {
  checkDims(n, k, blockSize)
  if (!(weight instanceof Float32Array) || weight.length !== n * k) {
    throw new TensorError(
      'ERR_TENSOR_SHAPE',
      `int4: weight must be a Float32Array of ${n} x ${k} = ${n * k} values, got ${describeArray(weight)}`,
    )
  }
  const scaleDtype = options.scaleDtype ?? 'F16'
  if (scaleDtype !== 'F16' && scaleDtype !== 'F32') {
    throw new TensorError('ERR_TENSOR_DTYPE', `int4: scales must be F16 or F32, got ${String(scaleDtype)}`)
  }
  const blocks = int4Blocks(k, blockSize)
  const half = blockSize / 2
  const qweight = new Uint8Array(n * blocks * half).fill(INT4_ZERO_POINT * 0x11)
  const scales = new Float32Array(n * blocks)
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const start = r * k + b * blockSize
      const end = r * k + Math.min((b + 1) * blockSize, k)
      // The value of largest magnitude, with its sign; the first one wins a tie.
      let extreme = 0
      for (let i = start; i < end; i++) {
        const w = weight[i] as number
        if (!Number.isFinite(w)) {
          throw new TensorError('ERR_TENSOR_VALUE', `int4: weight [${r}, ${i - r * k}] is ${w}`)
        }
        if (Math.abs(w) > Math.abs(extreme)) extreme = w
      }
      const scale = roundScale(extreme / -INT4_ZERO_POINT, scaleDtype, r, b)
      scales[r * blocks + b] = scale
      if (scale === 0) continue
      const out = (r * blocks + b) * half
      for (let i = start; i < end; i++) {
        const j = i - start
        const q = Math.min(15, Math.max(0, Math.round((weight[i] as number) / scale) + INT4_ZERO_POINT))
        const at = out + (j >> 1)
        const byte = qweight[at] as number
        qweight[at] = j & 1 ? (byte & 0x0f) | (q << 4) : (byte & 0xf0) | q
      }
    }
  }
  return { n, k, blockSize, blocks, qweight, scales }
}

/** The float32 weights an Int4Weight stands for: row-major [n, k], padding dropped. */
export function dequantizeInt4(w: Int4Weight): Float32Array {
  const { n, k, blockSize } = w
  checkDims(n, k, blockSize)
  const blocks = int4Blocks(k, blockSize)
  const half = blockSize / 2
  if (!(w.qweight instanceof Uint8Array) || w.qweight.length !== n * blocks * half) {
    throw new TensorError(
      'ERR_TENSOR_SHAPE',
      `int4: qweight must be ${n * blocks * half} bytes ([${n}, ${blocks}, ${half}]), got ${describeArray(w.qweight)}`,
    )
  }
  if (!(w.scales instanceof Float32Array) || w.scales.length !== n * blocks) {
    throw new TensorError(
      'ERR_TENSOR_SHAPE',
      `int4: scales must be a Float32Array of ${n * blocks} values ([${n}, ${blocks}]), got ${describeArray(w.scales)}`,
    )
  }
  const out = new Float32Array(n * k)
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < k; c++) {
      const b = (c / blockSize) | 0
      const j = c - b * blockSize
      const byte = w.qweight[(r * blocks + b) * half + (j >> 1)] as number
      const q = j & 1 ? byte >> 4 : byte & 0x0f
      out[r * k + c] = (q - INT4_ZERO_POINT) * (w.scales[r * blocks + b] as number)
    }
  }
  return out
}

function roundScale(scale: number, dtype: Int4ScaleDtype, row: number, block: number): number {
  if (dtype === 'F32') return Math.fround(scale)
  if (Math.abs(scale) > F16_MAX) {
    throw new TensorError(
      'ERR_TENSOR_VALUE',
      `int4: block ${block} of row ${row} needs scale ${scale}, beyond float16; use F32 scales`,
    )
  }
  // A scale that underflows float16 to zero quantises its block to zeros.
  const rounded = f16BitsToF32(f32ToF16Bits(scale))
  return rounded === 0 ? 0 : rounded
}

function checkDims(n: number, k: number, blockSize: number): void {
  if (!BLOCK_SIZES.includes(blockSize)) {
    throw new TensorError(
      'ERR_TENSOR_SHAPE',
      `int4: block size must be one of ${BLOCK_SIZES.join(', ')}, got ${String(blockSize)}`,
    )
  }
  for (const [what, v] of [
    ['rows', n],
    ['columns', k],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 1) {
      throw new TensorError('ERR_TENSOR_SHAPE', `int4: ${what} must be a positive integer, got ${String(v)}`)
    }
  }
  if (n * int4Blocks(k, blockSize) * blockSize > MAX_ELEMENTS) {
    throw new TensorError('ERR_TENSOR_SHAPE', `int4: [${n}, ${k}] is larger than ${MAX_ELEMENTS} weights`)
  }
}

function describeArray(a: unknown): string {
  if (ArrayBuffer.isView(a)) return `${a.constructor.name} of ${(a as Uint8Array).length}`
  return a === null ? 'null' : typeof a
}
