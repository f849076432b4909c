import { describe, expect, test } from 'vitest'
import { dequantizeGgml } from '../src/formats/ggml-dequant.js'
import { GGML_TYPES } from '../src/formats/ggml-types.js'

// float16 bit patterns of the scales used below
const H = { quarter: 0x3400, half: 0x3800, one: 0x3c00, minusOne: 0xbc00 }
const type = (name: string) => {
  const t = [...GGML_TYPES.values()].find((x) => x.name === name)
  if (t === undefined) throw new Error(name)
  return t
}
const block = (size: number, fill: (b: DataView) => void) => {
  const bytes = new Uint8Array(size)
  fill(new DataView(bytes.buffer))
  return bytes
}
const range = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i))
const runs = (parts: Array<[number, number]>) => parts.flatMap(([count, value]) => range(count, () => value))

describe('ggml dequantisation against hand-computed blocks', () => {
  test('Q8_0: x = q * d', () => {
    const b = block(34, (v) => {
      v.setUint16(0, H.half, true)
      for (let j = 0; j < 32; j++) v.setInt8(2 + j, j - 16)
      v.setInt8(2, -128)
      v.setInt8(33, 127)
    })
    const want = range(32, (j) => (j - 16) / 2)
    want[0] = -64
    want[31] = 63.5
    expect([...dequantizeGgml(type('Q8_0'), b)]).toEqual(want)
  })

  test('Q4_0: low nibbles are elements 0..15, high nibbles 16..31, x = (q - 8) * d', () => {
    const b = block(18, (v) => {
      v.setUint16(0, H.quarter, true)
      for (let j = 0; j < 16; j++) v.setUint8(2 + j, j | ((15 - j) << 4))
    })
    // elements 0..15: -2, -1.75, ..., 1.75; elements 16..31: 1.75 down to -2
    const want = [...range(16, (j) => (j - 8) / 4), ...range(16, (j) => (7 - j) / 4)]
    expect([...dequantizeGgml(type('Q4_0'), b)]).toEqual(want)
    expect(want[0]).toBe(-2)
    expect(want[16]).toBe(1.75)
  })

  test('two Q4_0 blocks in a row use their own scales', () => {
    const two = new Uint8Array(36)
    const v = new DataView(two.buffer)
    v.setUint16(0, H.one, true)
    v.setUint16(18, H.minusOne, true)
    two.fill(0x9a, 2, 18) // low 10, high 9
    two.fill(0x9a, 20, 36)
    expect([...dequantizeGgml(type('Q4_0'), two)]).toEqual(
      runs([
        [16, 2],
        [16, 1],
        [16, -2],
        [16, -1],
      ]),
    )
  })

  test('Q4_1: x = q * d + m', () => {
    const b = block(20, (v) => {
      v.setUint16(0, H.half, true)
      v.setUint16(2, H.minusOne, true)
      for (let j = 0; j < 16; j++) v.setUint8(4 + j, j | ((15 - j) << 4))
    })
    const want = [...range(16, (j) => j / 2 - 1), ...range(16, (j) => (15 - j) / 2 - 1)]
    expect([...dequantizeGgml(type('Q4_1'), b)]).toEqual(want)
  })

  test('Q5_0: bit k of qh is the fifth bit of element k, x = (q - 16) * d', () => {
    const b = block(22, (v) => {
      v.setUint16(0, H.half, true)
      v.setUint32(2, 0x00010001, true) // elements 0 and 16
      for (let j = 0; j < 16; j++) v.setUint8(6 + j, 0x88)
    })
    const want = range(32, (k) => (k === 0 || k === 16 ? 4 : -4))
    expect([...dequantizeGgml(type('Q5_0'), b)]).toEqual(want)
  })

  test('Q5_1: x = q * d + m with the fifth bits in qh', () => {
    const b = block(24, (v) => {
      v.setUint16(0, H.half, true)
      v.setUint16(2, H.one, true)
      v.setUint32(4, 0x80000002, true) // elements 1 and 31
      for (let j = 0; j < 16; j++) v.setUint8(8 + j, 0x10) // low 0, high 1
    })
    const want = [...range(16, (k) => (k === 1 ? 9 : 1)), ...range(16, (k) => (k === 15 ? 9.5 : 1.5))]
    expect([...dequantizeGgml(type('Q5_1'), b)]).toEqual(want)
  })

  test('Q4_K: 6-bit scales and mins packed in 12 bytes, eight sub-blocks of 32', () => {
    const b = block(144, (v) => {
      v.setUint16(0, H.one, true) // d
      v.setUint16(2, H.half, true) // dmin
      // scales 0..3 in bytes 0..3 (byte 0's top bits feed scale 4), mins 0..3 in bytes 4..7
      // (byte 4's top bits feed min 4), scales/mins 4..7 in the nibbles of bytes 8..11.
      ;[0x41, 2, 3, 4, 0x80, 1, 2, 3, 0x21, 0x43, 0x65, 0x87].forEach((x, i) => {
        v.setUint8(4 + i, x)
      })
      for (let i = 0; i < 128; i++) v.setUint8(16 + i, 0x53) // low 3, high 5
    })
    // (scale, min) per sub-block: (1,0) (2,1) (3,2) (4,3) (1+16, 2+32) (3,4) (5,6) (7,8); even
    // sub-blocks take the low nibble 3, odd ones the high nibble 5: x = sc * q - 0.5 * m
    const want = runs([
      [32, 3],
      [32, 9.5],
      [32, 8],
      [32, 18.5],
      [32, 34],
      [32, 13],
      [32, 12],
      [32, 31],
    ])
    expect([...dequantizeGgml(type('Q4_K'), b)]).toEqual(want)
  })

  test('Q5_K: as Q4_K plus a fifth bit per element from qh', () => {
    const b = block(176, (v) => {
      v.setUint16(0, H.one, true)
      v.setUint16(2, H.one, true)
      ;[1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1].forEach((x, i) => {
        v.setUint8(4 + i, x)
      })
      // qh bits 2j and 2j+1 serve sub-blocks 2j and 2j+1: bits 1 and 2 set -> sub-blocks 1 and 2
      for (let l = 0; l < 32; l++) v.setUint8(16 + l, 0b110)
      for (let i = 0; i < 128; i++) v.setUint8(48 + i, 0x21) // low 1, high 2
    })
    const want = runs([
      [32, 1],
      [32, 18],
      [32, 17],
      [32, 2],
      [32, 1],
      [32, 2],
      [32, 1],
      [32, 2],
    ])
    expect([...dequantizeGgml(type('Q5_K'), b)]).toEqual(want)
  })

  test('Q6_K: low nibbles in ql, two high bits in qh, signed 8-bit scales per 16 values', () => {
    const b = block(210, (v) => {
      for (let i = 0; i < 128; i++) v.setUint8(i, 0x21) // low 1, high 2
      for (let i = 0; i < 64; i++)
        v.setUint8(128 + i, 0b11100100) // 2-bit fields 0, 1, 2, 3
      ;[1, -2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16].forEach((x, i) => {
        v.setInt8(192 + i, x)
      })
      v.setUint16(208, H.half, true)
    })
    // q per 32-row quarter: (1|0<<4)-32 = -31, (1|1<<4)-32 = -15, (2|2<<4)-32 = 2, (2|3<<4)-32 = 18
    const want = runs([
      [16, 0.5 * 1 * -31],
      [16, 0.5 * -2 * -31],
      [16, 0.5 * 3 * -15],
      [16, 0.5 * 4 * -15],
      [16, 0.5 * 5 * 2],
      [16, 0.5 * 6 * 2],
      [16, 0.5 * 7 * 18],
      [16, 0.5 * 8 * 18],
      [16, 0.5 * 9 * -31],
      [16, 0.5 * 10 * -31],
      [16, 0.5 * 11 * -15],
      [16, 0.5 * 12 * -15],
      [16, 0.5 * 13 * 2],
      [16, 0.5 * 14 * 2],
      [16, 0.5 * 15 * 18],
      [16, 0.5 * 16 * 18],
    ])
    expect([...dequantizeGgml(type('Q6_K'), b)]).toEqual(want)
  })

  test('partial blocks and unreadable types are refused', () => {
    expect(() => dequantizeGgml(type('Q8_0'), new Uint8Array(35))).toThrow(/not whole Q8_0 blocks/)
    expect(() => dequantizeGgml(type('Q2_K'), new Uint8Array(84))).toThrow(/cannot dequantize ggml type Q2_K/)
  })
})
