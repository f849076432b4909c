import { describe, expect, it } from 'vitest'
import { TensorError } from '../src/errors.js'
import {
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  fromFloat32,
  toFloat32,
} from '../src/weights/float16.js'
import type { DType, RawTensor } from '../src/weights/tensor.js'

const isF16NaN = (b: number) => (b & 0x7c00) === 0x7c00 && (b & 0x03ff) !== 0
const isBf16NaN = (b: number) => (b & 0x7f80) === 0x7f80 && (b & 0x007f) !== 0

/** float32 with the given bit pattern (through integer arrays, so NaN payloads survive). */
function f32FromBits(bits: number[]): Float32Array {
  return new Float32Array(new Uint32Array(bits).buffer)
}

describe('f16BitsToF32', () => {
  it.each([
    [0x0000, 0],
    [0x3c00, 1],
    [0xbc00, -1],
    [0x4000, 2],
    [0x3800, 0.5],
    [0x3555, 0.333251953125],
    [0x7bff, 65504],
    [0xfbff, -65504],
    [0x0400, 2 ** -14],
    [0x0001, 2 ** -24],
    [0x03ff, 1023 * 2 ** -24],
    [0x8001, -(2 ** -24)],
    [0x7c00, Number.POSITIVE_INFINITY],
    [0xfc00, Number.NEGATIVE_INFINITY],
  ])('0x%s decodes exactly', (bits, value) => {
    expect(f16BitsToF32(bits)).toBe(value)
  })

  it('keeps the sign of zero and decodes every NaN pattern as NaN', () => {
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true)
    for (const bits of [0x7c01, 0x7e00, 0x7fff, 0xfe00, 0xfc01]) expect(f16BitsToF32(bits)).toBeNaN()
  })

  it.each([-1, 0x10000, 1.5, Number.NaN, Number.POSITIVE_INFINITY])('rejects bits %s', (bits) => {
    expect(() => f16BitsToF32(bits)).toThrow(TensorError)
    expect(() => bf16BitsToF32(bits)).toThrow(TensorError)
  })
})

describe('f32ToF16Bits', () => {
  it.each([
    ['one', 1, 0x3c00],
    ['minus one', -1, 0xbc00],
    ['largest finite', 65504, 0x7bff],
    ['just below the overflow tie', 65519, 0x7bff],
    ['overflow tie rounds to even = infinity', 65520, 0x7c00],
    ['overflow', 1e6, 0x7c00],
    ['-infinity', Number.NEGATIVE_INFINITY, 0xfc00],
    ['smallest subnormal', 2 ** -24, 0x0001],
    ['half the smallest subnormal ties to zero', 2 ** -25, 0x0000],
    ['just above half the smallest subnormal', 2 ** -25 * (1 + 2 ** -10), 0x0001],
    ['subnormal tie 1.5 ulp rounds to even 2', 3 * 2 ** -25, 0x0002],
    ['subnormal tie 2.5 ulp rounds to even 2', 5 * 2 ** -25, 0x0002],
    ['negative subnormal tie', -3 * 2 ** -25, 0x8002],
    ['far below the subnormals', 2 ** -26, 0x0000],
    ['float32 subnormal', 1e-40, 0x0000],
    ['negative float32 subnormal keeps the sign', -1e-40, 0x8000],
    ['subnormal carries into the smallest normal', 2 ** -14 - 2 ** -25, 0x0400],
    ['smallest normal', 2 ** -14, 0x0400],
    ['normal tie rounds down to even', 1 + 2 ** -11, 0x3c00],
    ['normal tie rounds up to even', 1 + 3 * 2 ** -11, 0x3c02],
    ['just above a tie rounds up', 1 + 2 ** -11 + 2 ** -20, 0x3c01],
    ['just below a tie rounds down', 1 + 2 ** -11 - 2 ** -20, 0x3c00],
    ['mantissa carry into exponent', 2 - 2 ** -12, 0x4000],
  ])('%s', (_label, x, bits) => {
    expect(f32ToF16Bits(x)).toBe(bits)
  })

  it('keeps the sign of zero and maps NaN to a NaN', () => {
    expect(f32ToF16Bits(-0)).toBe(0x8000)
    expect(f32ToF16Bits(0)).toBe(0x0000)
    expect(isF16NaN(f32ToF16Bits(Number.NaN))).toBe(true)
  })

  it('round-trips every non-NaN float16 exactly', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      if (isF16NaN(bits)) continue
      if (f32ToF16Bits(f16BitsToF32(bits)) !== bits)
        throw new Error(`0x${bits.toString(16)} did not round-trip`)
    }
  })

  it('picks the nearest float16 (ties to even) for 200k float32 values across the range', () => {
    let state = 12345
    for (let n = 0; n < 200_000; n++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0
      // Exponents 2^-27 .. 2^16 cover zero-rounding, subnormals, normals and overflow.
      const exp = 100 + (state % 44)
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0
      const x = f32FromBits([((state & 0x80000000) | (exp << 23) | (state & 0x7fffff)) >>> 0])[0] as number
      const bits = f32ToF16Bits(x)
      const err = Math.abs(x - f16BitsToF32(bits))
      if (Math.abs(x) >= 65520) {
        expect(bits & 0x7fff).toBe(0x7c00)
        continue
      }
      for (const neighbour of [bits - 1, bits + 1]) {
        if ((neighbour & 0x8000) !== (bits & 0x8000) || (neighbour & 0x7fff) >= 0x7c00) continue
        const other = Math.abs(x - f16BitsToF32(neighbour))
        if (other < err || (other === err && (bits & 1) === 1)) {
          throw new Error(`${x} -> 0x${bits.toString(16)} but 0x${neighbour.toString(16)} is nearer or even`)
        }
      }
    }
  })
})

describe('bfloat16', () => {
  it.each([
    [0x3f80, 1],
    [0xbf80, -1],
    [0x4049, 3.140625],
    [0x7f7f, 3.3895313892515355e38],
    [0x0001, 2 ** -133],
    [0x0080, 2 ** -126],
    [0x7f80, Number.POSITIVE_INFINITY],
    [0xff80, Number.NEGATIVE_INFINITY],
  ])('0x%s decodes exactly', (bits, value) => {
    expect(bf16BitsToF32(bits)).toBe(value)
  })

  it('decodes -0 and NaN', () => {
    expect(Object.is(bf16BitsToF32(0x8000), -0)).toBe(true)
    expect(bf16BitsToF32(0x7fc0)).toBeNaN()
    expect(bf16BitsToF32(0x7f81)).toBeNaN()
  })

  it.each([
    ['one', 1, 0x3f80],
    ['tie rounds down to even', 1 + 2 ** -8, 0x3f80],
    ['tie rounds up to even', 1 + 3 * 2 ** -8, 0x3f82],
    ['above a tie rounds up', 1 + 2 ** -8 + 2 ** -20, 0x3f81],
    ['largest float32 overflows to infinity', 3.4028234663852886e38, 0x7f80],
    ['negative overflow', -3.4028234663852886e38, 0xff80],
    ['pi', Math.PI, 0x4049],
    ['float32 subnormal below bfloat16 range', 2 ** -140, 0x0000],
    ['bfloat16 subnormal', 2 ** -133, 0x0001],
    ['bfloat16 subnormal tie rounds to even', 3 * 2 ** -134, 0x0002],
    ['negative zero', -0, 0x8000],
  ])('f32ToBf16Bits: %s', (_label, x, bits) => {
    expect(f32ToBf16Bits(x)).toBe(bits)
  })

  it('maps NaN to NaN, never to infinity', () => {
    expect(isBf16NaN(f32ToBf16Bits(Number.NaN))).toBe(true)
    // A NaN whose payload lives only in the low 16 bits would truncate to infinity.
    const bytes = fromFloat32(f32FromBits([0x7f800001, 0xff800001]), 'BF16')
    const view = new DataView(bytes.buffer)
    expect(isBf16NaN(view.getUint16(0, true))).toBe(true)
    expect(isBf16NaN(view.getUint16(2, true))).toBe(true)
    expect(view.getUint16(2, true) & 0x8000).toBe(0x8000)
  })

  it('round-trips every non-NaN bfloat16 exactly', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      if (isBf16NaN(bits)) continue
      if (f32ToBf16Bits(bf16BitsToF32(bits)) !== bits)
        throw new Error(`0x${bits.toString(16)} did not round-trip`)
    }
  })
})

describe('toFloat32', () => {
  const tensor = (dtype: DType, shape: number[], bytes: number[], offset = 0): RawTensor => {
    const buffer = new Uint8Array(bytes.length + offset)
    buffer.set(bytes, offset)
    return { dtype, shape, data: buffer.subarray(offset) }
  }

  it('decodes little-endian F16 and BF16, aligned or not', () => {
    for (const offset of [0, 1, 3]) {
      expect([...toFloat32(tensor('F16', [3], [0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00], offset))]).toEqual([
        1,
        -2,
        2 ** -24,
      ])
      expect([...toFloat32(tensor('BF16', [2, 1], [0x80, 0x3f, 0x49, 0x40], offset))]).toEqual([1, 3.140625])
    }
  })

  it('decodes F32 at any alignment and views aligned data without copying', () => {
    const bytes = [0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0]
    for (const offset of [0, 1, 2, 4]) {
      expect([...toFloat32(tensor('F32', [2], bytes, offset))]).toEqual([1, -2])
    }
    const t = tensor('F32', [2], bytes)
    const view = toFloat32(t)
    t.data[2] = 0x00 // 0x3f800000 (1.0) -> 0x40000000 (2.0)
    t.data[3] = 0x40
    expect(view[0]).toBe(2)
  })

  it('decodes every float16 pattern like the scalar function, NaN payloads included', () => {
    const all = new Uint16Array(0x10000).map((_, i) => i)
    const out = toFloat32({ dtype: 'F16', shape: [0x10000], data: new Uint8Array(all.buffer) })
    const outBits = new Uint32Array(out.buffer, out.byteOffset, out.length)
    for (let bits = 0; bits < 0x10000; bits++) {
      const expected = f16BitsToF32(bits)
      if (Number.isNaN(expected)) {
        // Payload is kept: re-encoding the float32 bits gives back the same float16.
        expect(((outBits[bits] as number) >>> 13) & 0x3ff).toBe(bits & 0x3ff)
      } else if (!Object.is(out[bits], expected)) {
        throw new Error(`0x${bits.toString(16)}: ${out[bits]} != ${expected}`)
      }
    }
  })

  it('handles scalars and empty tensors', () => {
    expect([...toFloat32(tensor('F16', [], [0x00, 0x3c]))]).toEqual([1])
    expect(toFloat32(tensor('BF16', [0, 5], [])).length).toBe(0)
  })

  it.each([
    ['unsupported dtype', tensor('I32', [1], [1, 0, 0, 0]), 'ERR_TENSOR_DTYPE'],
    ['bogus dtype', { dtype: 'F8' as DType, shape: [1], data: new Uint8Array(1) }, 'ERR_TENSOR_DTYPE'],
    ['too few bytes', tensor('F16', [3], [0, 0, 0, 0]), 'ERR_TENSOR_SHAPE'],
    ['too many bytes', tensor('F32', [1], [0, 0, 0, 0, 0]), 'ERR_TENSOR_SHAPE'],
    ['negative dimension', tensor('F32', [-1], []), 'ERR_TENSOR_SHAPE'],
    ['fractional dimension', tensor('F16', [0.5], []), 'ERR_TENSOR_SHAPE'],
    ['NaN dimension', tensor('F16', [Number.NaN], []), 'ERR_TENSOR_SHAPE'],
    [
      'shape not an array',
      { dtype: 'F16', shape: 4 as unknown as number[], data: new Uint8Array(8) },
      'ERR_TENSOR_SHAPE',
    ],
    [
      'data not bytes',
      { dtype: 'F32', shape: [1], data: [0, 0, 0, 0] as unknown as Uint8Array },
      'ERR_TENSOR_VALUE',
    ],
  ] as const)('rejects %s', (_label, t, code) => {
    expect(() => toFloat32(t as RawTensor)).toThrow(expect.objectContaining({ name: 'TensorError', code }))
  })
})

describe('fromFloat32', () => {
  it('writes little-endian bytes', () => {
    const data = new Float32Array([1, -2])
    expect([...fromFloat32(data, 'F32')]).toEqual([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0])
    expect([...fromFloat32(data, 'F16')]).toEqual([0x00, 0x3c, 0x00, 0xc0])
    expect([...fromFloat32(data, 'BF16')]).toEqual([0x80, 0x3f, 0x00, 0xc0])
  })

  it('respects subarray offsets and returns a fresh buffer', () => {
    const backing = new Float32Array([9, 1, 0.5, 9])
    const data = backing.subarray(1, 3)
    const bytes = fromFloat32(data, 'F32')
    expect(bytes.byteLength).toBe(8)
    backing[1] = 7
    expect([...toFloat32({ dtype: 'F32', shape: [2], data: bytes })]).toEqual([1, 0.5])
    expect([...fromFloat32(data, 'F16')]).toEqual([0x00, 0x47, 0x00, 0x38])
  })

  it('agrees with the scalar encoders element by element', () => {
    const data = new Float32Array(5000)
    let state = 99
    for (let i = 0; i < data.length; i++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0
      data[i] = ((state / 2 ** 32) * 2 - 1) * 2 ** ((i % 40) - 28)
    }
    data[0] = Number.POSITIVE_INFINITY
    data[1] = -0
    const f16 = new DataView(fromFloat32(data, 'F16').buffer)
    const bf16 = new DataView(fromFloat32(data, 'BF16').buffer)
    for (let i = 0; i < data.length; i++) {
      expect(f16.getUint16(2 * i, true)).toBe(f32ToF16Bits(data[i] as number))
      expect(bf16.getUint16(2 * i, true)).toBe(f32ToBf16Bits(data[i] as number))
    }
  })

  it('encodes NaN with payload only in the low bits as a float16 NaN', () => {
    const bytes = fromFloat32(f32FromBits([0x7f800001]), 'F16')
    expect(isF16NaN(new DataView(bytes.buffer).getUint16(0, true))).toBe(true)
  })

  it('rejects other dtypes and non-Float32Array input', () => {
    expect(() => fromFloat32(new Float32Array(1), 'I8' as 'F32')).toThrow(TensorError)
    expect(() => fromFloat32([1] as unknown as Float32Array, 'F16')).toThrow(TensorError)
  })
})
