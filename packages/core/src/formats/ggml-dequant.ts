import { TensorError } from '../errors.js'
import { f16BitsToF32 } from '../weights/float16.js'
import type { GgmlTypeInfo } from './ggml-types.js'

/** Dequantizes the block at byte `a` of `b` into out[o ...]. */
type Dequantizer = (b: Uint8Array, a: number, out: Float32Array, o: number) => void

const f = Math.fround
const f16 = (b: Uint8Array, at: number) => f16BitsToF32((b[at] as number) | ((b[at + 1] as number) << 8))
const u8 = (b: Uint8Array, at: number) => b[at] as number
const i8 = (b: Uint8Array, at: number) => ((b[at] as number) << 24) >> 24
const u32 = (b: Uint8Array, at: number) =>
  (u8(b, at) | (u8(b, at + 1) << 8) | (u8(b, at + 2) << 16) | (u8(b, at + 3) << 24)) >>> 0

/**
 * One block of each quantized type to 32/256 float32 values, following ggml's reference
 * dequantize_row_* functions; every product and sum is rounded to float32 as the C code does,
 * so results equal llama.cpp's bit for bit.
 */
const DEQUANTIZERS: Readonly<Record<string, Dequantizer>> = {
  // d (f16), 32 x int8: x = q * d
  Q8_0(b, a, out, o) {
    const d = f16(b, a + 0)
    for (let j = 0; j < 32; j++) out[o + j] = f(i8(b, a + 2 + j) * d)
  },
  // d (f16), 16 bytes: low nibbles are elements 0..15, high nibbles 16..31; x = (q - 8) * d
  Q4_0(b, a, out, o) {
    const d = f16(b, a + 0)
    for (let j = 0; j < 16; j++) {
      const q = u8(b, a + 2 + j)
      out[o + j] = f(((q & 0xf) - 8) * d)
      out[o + j + 16] = f(((q >> 4) - 8) * d)
    }
  },
  // d, m (f16), 16 bytes of nibbles: x = q * d + m
  Q4_1(b, a, out, o) {
    const d = f16(b, a + 0)
    const m = f16(b, a + 2)
    for (let j = 0; j < 16; j++) {
      const q = u8(b, a + 4 + j)
      out[o + j] = f(f((q & 0xf) * d) + m)
      out[o + j + 16] = f(f((q >> 4) * d) + m)
    }
  },
  // d (f16), qh (u32: the fifth bit of each element), 16 bytes of nibbles: x = (q - 16) * d
  Q5_0(b, a, out, o) {
    const d = f16(b, a + 0)
    const qh = u32(b, a + 2)
    for (let j = 0; j < 16; j++) {
      const q = u8(b, a + 6 + j)
      out[o + j] = f((((q & 0xf) | (((qh >>> j) << 4) & 0x10)) - 16) * d)
      out[o + j + 16] = f((((q >> 4) | ((qh >>> (j + 12)) & 0x10)) - 16) * d)
    }
  },
  // d, m (f16), qh (u32), 16 bytes of nibbles: x = q * d + m
  Q5_1(b, a, out, o) {
    const d = f16(b, a + 0)
    const m = f16(b, a + 2)
    const qh = u32(b, a + 4)
    for (let j = 0; j < 16; j++) {
      const q = u8(b, a + 8 + j)
      out[o + j] = f(f(((q & 0xf) | (((qh >>> j) << 4) & 0x10)) * d) + m)
      out[o + j + 16] = f(f(((q >> 4) | ((qh >>> (j + 12)) & 0x10)) * d) + m)
    }
  },
  // d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 bytes of nibbles; 8 sub-blocks of 32
  Q4_K(b, a, out, o) {
    const d = f16(b, a + 0)
    const dmin = f16(b, a + 2)
    for (let j = 0, is = 0, q = 16; j < 256; j += 64, is += 2, q += 32) {
      const [sc1, m1] = scaleMinK4(b, a + 4, is)
      const [sc2, m2] = scaleMinK4(b, a + 4, is + 1)
      const d1 = f(d * sc1)
      const d2 = f(d * sc2)
      const min1 = f(dmin * m1)
      const min2 = f(dmin * m2)
      for (let l = 0; l < 32; l++) {
        const v = u8(b, a + q + l)
        out[o + j + l] = f(f(d1 * (v & 0xf)) - min1)
        out[o + j + 32 + l] = f(f(d2 * (v >> 4)) - min2)
      }
    }
  },
  // d, dmin (f16), 12 bytes of scales, 32 bytes qh (fifth bits), 128 bytes of nibbles
  Q5_K(b, a, out, o) {
    const d = f16(b, a + 0)
    const dmin = f16(b, a + 2)
    const qhAt = 16
    for (let j = 0, is = 0, q = 48, u1 = 1, u2 = 2; j < 256; j += 64, is += 2, q += 32, u1 <<= 2, u2 <<= 2) {
      const [sc1, m1] = scaleMinK4(b, a + 4, is)
      const [sc2, m2] = scaleMinK4(b, a + 4, is + 1)
      const d1 = f(d * sc1)
      const d2 = f(d * sc2)
      const min1 = f(dmin * m1)
      const min2 = f(dmin * m2)
      for (let l = 0; l < 32; l++) {
        const v = u8(b, a + q + l)
        const h = u8(b, a + qhAt + l)
        out[o + j + l] = f(f(d1 * ((v & 0xf) + (h & u1 ? 16 : 0))) - min1)
        out[o + j + 32 + l] = f(f(d2 * ((v >> 4) + (h & u2 ? 16 : 0))) - min2)
      }
    }
  },
  // 128 bytes ql (low nibbles), 64 bytes qh (2 high bits), 16 int8 scales, d (f16)
  Q6_K(b, a, out, o) {
    const d = f16(b, a + 208)
    for (let n = 0, ql = 0, qh = 128, sc = 192; n < 256; n += 128, ql += 64, qh += 32, sc += 8) {
      for (let l = 0; l < 32; l++) {
        const is = l >> 4
        const h = u8(b, a + qh + l)
        const lo0 = u8(b, a + ql + l)
        const lo1 = u8(b, a + ql + l + 32)
        const q1 = ((lo0 & 0xf) | ((h & 3) << 4)) - 32
        const q2 = ((lo1 & 0xf) | (((h >> 2) & 3) << 4)) - 32
        const q3 = ((lo0 >> 4) | (((h >> 4) & 3) << 4)) - 32
        const q4 = ((lo1 >> 4) | (((h >> 6) & 3) << 4)) - 32
        out[o + n + l] = f(f(d * i8(b, a + sc + is)) * q1)
        out[o + n + l + 32] = f(f(d * i8(b, a + sc + is + 2)) * q2)
        out[o + n + l + 64] = f(f(d * i8(b, a + sc + is + 4)) * q3)
        out[o + n + l + 96] = f(f(d * i8(b, a + sc + is + 6)) * q4)
      }
    }
  },
}

/** ggml's get_scale_min_k4: the j-th 6-bit scale and min packed in 12 bytes at `at`. */
function scaleMinK4(b: Uint8Array, at: number, j: number): [number, number] {
  const q = (i: number) => u8(b, at + i)
  if (j < 4) return [q(j) & 63, q(j + 4) & 63]
  return [(q(j + 4) & 0xf) | ((q(j - 4) >> 6) << 4), (q(j + 4) >> 4) | ((q(j) >> 6) << 4)]
}

/** Whether `dequantizeGgml` reads this type (plain floats are passed through instead). */
export function canDequantize(type: GgmlTypeInfo): boolean {
  return Object.hasOwn(DEQUANTIZERS, type.name)
}

/** Dequantizes `bytes` (whole blocks of `type`) to float32, in ggml element order. */
export function dequantizeGgml(type: GgmlTypeInfo, bytes: Uint8Array): Float32Array {
  const dequantize = DEQUANTIZERS[type.name]
  if (dequantize === undefined || !Object.hasOwn(DEQUANTIZERS, type.name)) {
    throw new TensorError('ERR_TENSOR_DTYPE', `cannot dequantize ggml type ${type.name}`)
  }
  if (bytes.byteLength % type.blockBytes !== 0) {
    throw new TensorError(
      'ERR_TENSOR_SHAPE',
      `${bytes.byteLength} bytes are not whole ${type.name} blocks of ${type.blockBytes} bytes`,
    )
  }
  const blocks = bytes.byteLength / type.blockBytes
  const out = new Float32Array(blocks * type.blockSize)
  for (let i = 0; i < blocks; i++) dequantize(bytes, i * type.blockBytes, out, i * type.blockSize)
  return out
}
