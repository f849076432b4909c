import { mulberry32 } from '@butterfly/testing'
import { expect } from 'vitest'
import { WireProtocolError, type WireProtocolErrorCode } from '../src/errors.js'
import { encodeFrame, type FrameType } from '../src/wire/frame.js'

/** Runs fn and asserts it throws a WireProtocolError with exactly this code. */
export function expectWireError(fn: () => unknown, code: WireProtocolErrorCode): WireProtocolError {
  let thrown: unknown
  try {
    fn()
  } catch (err) {
    thrown = err
  }
  expect(thrown, `expected ${code}`).toBeInstanceOf(WireProtocolError)
  const err = thrown as WireProtocolError
  expect(err.code, err.message).toBe(code)
  expect(err.name).toBe('WireProtocolError')
  return err
}

export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items]
  const r = mulberry32(seed)
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1))
    ;[out[i], out[j]] = [out[j] as T, out[i] as T]
  }
  return out
}

/** Bitwise equality (toEqual would confuse -0 with 0 and choke on NaN); returns the first mismatch. */
export function firstByteMismatch(a: ArrayBufferView, b: ArrayBufferView): number {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
  if (x.length !== y.length) return Math.min(x.length, y.length)
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i
  return -1
}

/** Builds message bodies byte by byte, following the documented layout independently of the encoder. */
export class RawBody {
  private readonly bytes: number[] = []

  u8(v: number): this {
    this.bytes.push(v & 0xff)
    return this
  }
  u16(v: number): this {
    return this.raw(le(2, (dv) => dv.setUint16(0, v, true)))
  }
  u32(v: number): this {
    return this.raw(le(4, (dv) => dv.setUint32(0, v, true)))
  }
  i32(v: number): this {
    return this.raw(le(4, (dv) => dv.setInt32(0, v, true)))
  }
  f32(v: number): this {
    return this.raw(le(4, (dv) => dv.setFloat32(0, v, true)))
  }
  f64(v: number): this {
    return this.raw(le(8, (dv) => dv.setFloat64(0, v, true)))
  }
  ascii(s: string): this {
    for (let i = 0; i < s.length; i++) this.bytes.push(s.charCodeAt(i) & 0xff)
    return this
  }
  raw(b: ArrayLike<number>): this {
    for (let i = 0; i < b.length; i++) this.bytes.push(b[i] as number)
    return this
  }
  pad4(fill = 0): this {
    while (this.bytes.length % 4 !== 0) this.bytes.push(fill)
    return this
  }
  /** Generation id: u8 length, bytes, padding to 4. */
  id(s: string): this {
    return this.u8(s.length).ascii(s).pad4()
  }
  build(): Uint8Array {
    return Uint8Array.from(this.bytes)
  }
}

function le(n: number, write: (dv: DataView) => void): Uint8Array {
  const out = new Uint8Array(n)
  write(new DataView(out.buffer))
  return out
}

export function frameOf(
  type: FrameType,
  body: Uint8Array,
  at: { messageId?: number; chunkIndex?: number; chunkCount?: number } = {},
): Uint8Array {
  return encodeFrame({
    type,
    messageId: at.messageId ?? 1,
    chunkIndex: at.chunkIndex ?? 0,
    chunkCount: at.chunkCount ?? 1,
    payload: body,
  })
}

/** A copy of the frame with header bytes changed through a DataView. */
export function patched(frame: Uint8Array, edit: (dv: DataView) => void): Uint8Array {
  const copy = frame.slice()
  edit(new DataView(copy.buffer))
  return copy
}
