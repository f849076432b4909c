import { WireProtocolError } from '../errors.js'
import { FRAME_HEADER_BYTES, type FrameType, writeFrameHeader } from './frame.js'
import { fp16ToValues, valuesToFp16 } from './hidden-dtype.js'

/**
 * Byte-level writer and reader for message bodies: little-endian scalars, short strings, and
 * raw float/int arrays kept 4-byte aligned so a reader can view them in place.
 */

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1
const HEAD_BYTES = 4096

const utf8Decoder = new TextDecoder('utf-8', { fatal: true })
const utf8Encoder = new TextEncoder()

export class BodyWriter {
  private readonly parts: Uint8Array[] = []
  private head = new Uint8Array(HEAD_BYTES)
  private view = new DataView(this.head.buffer)
  private headLength = 0
  private total = 0

  get length(): number {
    return this.total
  }

  u8(value: number): this {
    this.reserve(1).setUint8(this.headLength - 1, value)
    return this
  }
  u16(value: number): this {
    this.reserve(2).setUint16(this.headLength - 2, value, true)
    return this
  }
  u32(value: number): this {
    this.reserve(4).setUint32(this.headLength - 4, value, true)
    return this
  }
  f32(value: number): this {
    this.reserve(4).setFloat32(this.headLength - 4, value, true)
    return this
  }
  f64(value: number): this {
    this.reserve(8).setFloat64(this.headLength - 8, value, true)
    return this
  }
  bytes(value: Uint8Array): this {
    this.reserve(value.length)
    this.head.set(value, this.headLength - value.length)
    return this
  }
  /** Zero padding up to the next multiple of 4 of the body offset. */
  align4(): this {
    const pad = (4 - (this.total % 4)) % 4
    this.reserve(pad)
    return this
  }

  /** Appends the array's bytes as little-endian, without copying on little-endian hosts. */
  array(value: Float32Array | Int32Array): this {
    this.align4()
    this.flushHead()
    if (value.length === 0) return this
    if (LITTLE_ENDIAN_HOST) {
      this.parts.push(new Uint8Array(value.buffer, value.byteOffset, value.byteLength))
    } else {
      const out = new Uint8Array(value.byteLength)
      const dv = new DataView(out.buffer)
      const isFloat = value instanceof Float32Array
      for (let i = 0; i < value.length; i++) {
        if (isFloat) dv.setFloat32(i * 4, value[i] as number, true)
        else dv.setInt32(i * 4, value[i] as number, true)
      }
      this.parts.push(out)
    }
    this.total += value.byteLength
    return this
  }

  /** The values as little-endian fp16 (the caller checked they are fp16 values), padded to 4. */
  fp16Array(value: Float32Array): this {
    this.align4()
    this.flushHead()
    const bytes = valuesToFp16(value)
    this.parts.push(bytes)
    this.total += bytes.length
    return this.align4()
  }

  /** Appends another writer's body (a batch's inner message); the writer must not be used after. */
  append(other: BodyWriter): this {
    this.align4()
    this.flushHead()
    other.flushHead()
    this.parts.push(...other.parts)
    this.total += other.total
    return this
  }

  /** Splits the body into frames of at most `maxPayload` payload bytes, copying each byte once. */
  toFrames(type: FrameType, messageId: number, maxPayload: number, flags = 0): Uint8Array[] {
    this.flushHead()
    const count = Math.max(1, Math.ceil(this.total / maxPayload))
    const frames: Uint8Array[] = []
    let part = 0
    let partOffset = 0
    for (let i = 0; i < count; i++) {
      const length = Math.min(maxPayload, this.total - i * maxPayload)
      const frame = new Uint8Array(FRAME_HEADER_BYTES + length)
      writeFrameHeader(frame, type, messageId, i, count, length, flags)
      let at = FRAME_HEADER_BYTES
      while (at < frame.length) {
        const src = this.parts[part] as Uint8Array
        const n = Math.min(src.length - partOffset, frame.length - at)
        frame.set(src.subarray(partOffset, partOffset + n), at)
        at += n
        partOffset += n
        if (partOffset === src.length) {
          part++
          partOffset = 0
        }
      }
      frames.push(frame)
    }
    return frames
  }

  private reserve(n: number): DataView {
    if (this.headLength + n > this.head.length) {
      // Only a StepResult with a large fingerprint has more than 4 KiB outside its arrays.
      const grown = new Uint8Array(Math.max(this.head.length * 2, this.headLength + n))
      grown.set(this.head.subarray(0, this.headLength))
      this.head = grown
      this.view = new DataView(grown.buffer)
    }
    this.headLength += n
    this.total += n
    return this.view
  }

  private flushHead(): void {
    if (this.headLength === 0) return
    this.parts.push(this.head.subarray(0, this.headLength))
    this.head = new Uint8Array(HEAD_BYTES)
    this.view = new DataView(this.head.buffer)
    this.headLength = 0
  }
}

export class BodyReader {
  private readonly view: DataView
  private offset = 0

  constructor(private readonly body: Uint8Array) {
    this.view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  }

  u8(): number {
    return this.view.getUint8(this.take(1))
  }
  u16(): number {
    return this.view.getUint16(this.take(2), true)
  }
  u32(): number {
    return this.view.getUint32(this.take(4), true)
  }
  f32(): number {
    return this.view.getFloat32(this.take(4), true)
  }
  f64(): number {
    return this.view.getFloat64(this.take(8), true)
  }
  ascii(length: number): string {
    const at = this.take(length)
    let s = ''
    for (let i = 0; i < length; i++) {
      const c = this.body[at + i] as number
      if (c > 0x7e || c < 0x20) throw payloadError(`non-printable byte 0x${c.toString(16)} in a string field`)
      s += String.fromCharCode(c)
    }
    return s
  }
  utf8(length: number): string {
    const at = this.take(length)
    try {
      return utf8Decoder.decode(this.body.subarray(at, at + length))
    } catch (cause) {
      throw new WireProtocolError('ERR_WIRE_PAYLOAD', 'string field is not valid UTF-8', { cause })
    }
  }
  /** A copy, so the result never aliases a buffer the caller may reuse. */
  bytes(length: number): Uint8Array {
    const at = this.take(length)
    return this.body.slice(at, at + length)
  }
  align4(): void {
    const pad = (4 - (this.offset % 4)) % 4
    const at = this.take(pad)
    for (let i = 0; i < pad; i++) {
      if (this.body[at + i] !== 0) throw payloadError('non-zero padding byte')
    }
  }

  /** A view into the body when aligned on a little-endian host; a copy otherwise. */
  float32Array(count: number): Float32Array {
    this.align4()
    const at = this.takeArray(count)
    if (LITTLE_ENDIAN_HOST && (this.body.byteOffset + at) % 4 === 0) {
      return new Float32Array(this.body.buffer, this.body.byteOffset + at, count)
    }
    const out = new Float32Array(count)
    for (let i = 0; i < count; i++) out[i] = this.view.getFloat32(at + i * 4, true)
    return out
  }

  /** fp16 values widened to a fresh Float32Array; the zero padding to 4 after them is checked. */
  float16Array(count: number): Float32Array {
    this.align4()
    if (!(Number.isInteger(count) && count >= 0 && count * 2 <= this.body.length - this.offset)) {
      throw payloadError(
        `fp16 array of ${count} elements does not fit in the ${this.body.length - this.offset} remaining body bytes`,
      )
    }
    const at = this.take(count * 2)
    const out = fp16ToValues(this.body.subarray(at, at + count * 2), count)
    this.align4()
    return out
  }

  int32Array(count: number): Int32Array {
    this.align4()
    const at = this.takeArray(count)
    if (LITTLE_ENDIAN_HOST && (this.body.byteOffset + at) % 4 === 0) {
      return new Int32Array(this.body.buffer, this.body.byteOffset + at, count)
    }
    const out = new Int32Array(count)
    for (let i = 0; i < count; i++) out[i] = this.view.getInt32(at + i * 4, true)
    return out
  }

  /** Every byte must be accounted for. */
  end(): void {
    if (this.offset !== this.body.length) {
      throw payloadError(`message body has ${this.body.length - this.offset} unexpected trailing bytes`)
    }
  }

  private takeArray(count: number): number {
    if (!(Number.isInteger(count) && count >= 0 && count * 4 <= this.body.length - this.offset)) {
      throw payloadError(
        `array of ${count} elements does not fit in the ${this.body.length - this.offset} remaining body bytes`,
      )
    }
    return this.take(count * 4)
  }

  private take(n: number): number {
    if (this.offset + n > this.body.length) {
      throw payloadError(
        `message body truncated: need ${n} bytes at offset ${this.offset}, body is ${this.body.length}`,
      )
    }
    const at = this.offset
    this.offset += n
    return at
  }
}

export function utf8Bytes(s: string): Uint8Array {
  return utf8Encoder.encode(s)
}

export function payloadError(message: string): WireProtocolError {
  return new WireProtocolError('ERR_WIRE_PAYLOAD', message)
}
