import { TensorError } from '../errors.js'
import { DTYPE_BYTES, type DType, type RawTensor } from './tensor.js'

// One shared scratch pair reinterprets float32 <-> uint32 without allocating per call.
const scratchF32 = new Float32Array(1)
const scratchU32 = new Uint32Array(scratchF32.buffer)

// Typed-array views use host byte order; tensors are little-endian. Every mainstream host is
// little-endian, but a big-endian one must still get correct numbers, just more slowly.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

function checkBits(bits: number, max: number, what: string): void {
  if (!Number.isInteger(bits) || bits < 0 || bits > max) {
    throw new TensorError('ERR_TENSOR_VALUE', `${what} bits must be an integer in [0, ${max}], got ${bits}`)
  }
}

/** IEEE 754 binary16 bit pattern -> its exact value. */
export function f16BitsToF32(bits: number): number {
  checkBits(bits, 0xffff, 'float16')
  return f16ToNumber(bits)
}

function f16ToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1
  const exp = (bits >>> 10) & 0x1f
  const mant = bits & 0x3ff
  if (exp === 0) return sign * mant * 2 ** -24
  if (exp === 0x1f) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN
  return sign * (1024 + mant) * 2 ** (exp - 25)
}

/**
 * Rounds to the nearest binary16, ties to even. `x` is first rounded to float32 (the name
 * promises float32 input), so doubles that are not float32 values may round twice.
 */
export function f32ToF16Bits(x: number): number {
  scratchF32[0] = x
  return f32BitsToF16Bits(scratchU32[0] as number)
}

/** Core of the float32 -> float16 conversion on raw bits; inlined by the bulk loop. */
function f32BitsToF16Bits(b: number): number {
  const sign = (b >>> 16) & 0x8000
  const exp = (b >>> 23) & 0xff
  const mant = b & 0x7fffff
  // NaN stays NaN (quiet, top payload bits kept); infinity stays infinity.
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13)
  const e = exp - 112 // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    // Below 2^-25 everything rounds to zero (exactly 2^-25 ties to the even zero).
    if (e < -10) return sign
    const m = mant | 0x800000
    const shift = 14 - e
    let h = m >>> shift
    const rem = m & ((1 << shift) - 1)
    const halfway = 1 << (shift - 1)
    if (rem > halfway || (rem === halfway && (h & 1) === 1)) h++
    // A carry out of the subnormal range lands exactly on the smallest normal, as it should.
    return sign | h
  }
  let h = (e << 10) | (mant >>> 13)
  const rem = mant & 0x1fff
  // A carry can ripple into the exponent and up to infinity: both are the correct result.
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++
  return sign | h
}

/** bfloat16 bit pattern -> its exact value. */
export function bf16BitsToF32(bits: number): number {
  checkBits(bits, 0xffff, 'bfloat16')
  scratchU32[0] = bits << 16
  return scratchF32[0] as number
}

/** Rounds to the nearest bfloat16, ties to even. `x` is first rounded to float32. */
export function f32ToBf16Bits(x: number): number {
  scratchF32[0] = x
  return f32BitsToBf16Bits(scratchU32[0] as number)
}

function f32BitsToBf16Bits(b: number): number {
  // Truncating a NaN payload could leave all-zero mantissa bits (= infinity), so force quiet.
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return (b >>> 16) | 0x0040
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff
}

let f16Table: Uint32Array | undefined

/**
 * float32 bit patterns of all 65536 float16 values; 256 KiB, built on first use. Copying bits
 * through integer arrays is the fastest bulk decode and carries NaN payloads over untouched.
 */
function f16LookupTable(): Uint32Array {
  if (f16Table === undefined) {
    const table = new Uint32Array(0x10000)
    for (let i = 0; i < 0x10000; i++) {
      if ((i & 0x7c00) === 0x7c00) {
        // Infinities and NaNs: widen the payload by hand; a JS number would canonicalize NaNs.
        table[i] = ((i & 0x8000) << 16) | 0x7f800000 | ((i & 0x3ff) << 13)
      } else {
        scratchF32[0] = f16ToNumber(i)
        table[i] = scratchU32[0] as number
      }
    }
    f16Table = table
  }
  return f16Table
}

function checkedElementCount(t: RawTensor): number {
  if (!Array.isArray(t.shape)) throw new TensorError('ERR_TENSOR_SHAPE', 'tensor shape must be an array')
  let n = 1
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new TensorError(
        'ERR_TENSOR_SHAPE',
        `invalid dimension ${String(d)} in shape [${t.shape.join(', ')}]`,
      )
    }
    n *= d
  }
  if (!Number.isSafeInteger(n))
    throw new TensorError('ERR_TENSOR_SHAPE', `shape [${t.shape.join(', ')}] is too large`)
  if (!(t.data instanceof Uint8Array))
    throw new TensorError('ERR_TENSOR_VALUE', 'tensor data must be a Uint8Array')
  const bytes = DTYPE_BYTES[t.dtype]
  if (t.data.byteLength !== n * bytes) {
    throw new TensorError(
      'ERR_TENSOR_SHAPE',
      `${t.dtype} tensor of shape [${t.shape.join(', ')}] needs ${n * bytes} bytes, got ${t.data.byteLength}`,
    )
  }
  return n
}

/** Little-endian uint16 elements of `data` as a host-order array (a view when possible). */
function u16Elements(data: Uint8Array, n: number): Uint16Array {
  if (!LITTLE_ENDIAN) {
    const out = new Uint16Array(n)
    for (let i = 0; i < n; i++) out[i] = (data[2 * i] as number) | ((data[2 * i + 1] as number) << 8)
    return out
  }
  if (data.byteOffset % 2 === 0) return new Uint16Array(data.buffer, data.byteOffset, n)
  return new Uint16Array(data.slice().buffer, 0, n)
}

/**
 * Decodes a floating-point tensor to float32. For F32 on little-endian hosts with an aligned
 * buffer the result is a VIEW sharing memory with `t.data` (weights are large; copying them
 * all would double peak memory); otherwise it is a fresh array.
 */
export function toFloat32(t: RawTensor): Float32Array {
  const dtype: DType = t.dtype
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') {
    throw new TensorError(
      'ERR_TENSOR_DTYPE',
      `cannot convert ${String(dtype)} to float32 (need F32, F16 or BF16)`,
    )
  }
  const n = checkedElementCount(t)
  const data = t.data
  if (dtype === 'F32') {
    if (LITTLE_ENDIAN) {
      if (data.byteOffset % 4 === 0) return new Float32Array(data.buffer, data.byteOffset, n)
      return new Float32Array(data.slice().buffer, 0, n)
    }
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
    const out = new Float32Array(n)
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true)
    return out
  }
  const src = u16Elements(data, n)
  const out = new Float32Array(n)
  const outBits = new Uint32Array(out.buffer)
  if (dtype === 'F16') {
    const table = f16LookupTable()
    for (let i = 0; i < n; i++) outBits[i] = table[src[i] as number] as number
  } else {
    for (let i = 0; i < n; i++) outBits[i] = (src[i] as number) << 16
  }
  return out
}

/** Encodes float32 values as little-endian F32, F16 or BF16 bytes (a fresh buffer). */
export function fromFloat32(data: Float32Array, dtype: 'F32' | 'F16' | 'BF16'): Uint8Array {
  if (!(data instanceof Float32Array))
    throw new TensorError('ERR_TENSOR_VALUE', 'data must be a Float32Array')
  const n = data.length
  if (dtype === 'F32') {
    if (LITTLE_ENDIAN) return new Uint8Array(data.slice().buffer)
    const out = new Uint8Array(4 * n)
    const view = new DataView(out.buffer)
    for (let i = 0; i < n; i++) view.setFloat32(4 * i, data[i] as number, true)
    return out
  }
  if (dtype !== 'F16' && dtype !== 'BF16') {
    throw new TensorError(
      'ERR_TENSOR_DTYPE',
      `cannot encode float32 as ${String(dtype)} (need F32, F16 or BF16)`,
    )
  }
  // A Float32Array's byteOffset is always 4-aligned, so this view is always legal.
  const src = new Uint32Array(data.buffer, data.byteOffset, n)
  const out = new Uint16Array(n)
  if (dtype === 'F16') {
    for (let i = 0; i < n; i++) out[i] = f32BitsToF16Bits(src[i] as number)
  } else {
    for (let i = 0; i < n; i++) out[i] = f32BitsToBf16Bits(src[i] as number)
  }
  const bytes = new Uint8Array(out.buffer)
  if (!LITTLE_ENDIAN) {
    for (let i = 0; i < bytes.length; i += 2) {
      const lo = bytes[i] as number
      bytes[i] = bytes[i + 1] as number
      bytes[i + 1] = lo
    }
  }
  return bytes
}
