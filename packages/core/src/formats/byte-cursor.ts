import { ModelFileError, type ModelFileErrorCode } from '../errors.js'
import { type ByteSource, readExact } from '../weights/byte-source.js'

const DEFAULT_CHUNK = 1 << 20

/**
 * Sequential little-endian reads over a ByteSource, fetched in chunks so that parsing a header
 * of many small fields costs few source reads. Every read names `context` (what is being read)
 * in its error, and a read past the end is ERR_MODEL_FILE_TRUNCATED, never a short value.
 */
export class ByteCursor {
  /** What the caller is reading now; prefixes every error message. */
  context = 'header'
  private buffer: Uint8Array = new Uint8Array(0)
  private bufferStart = 0
  private position: number

  constructor(
    readonly source: ByteSource,
    start = 0,
    private readonly chunk = DEFAULT_CHUNK,
  ) {
    this.position = start
  }

  get offset(): number {
    return this.position
  }

  get remaining(): number {
    return this.source.size - this.position
  }

  seek(offset: number): void {
    this.position = offset
  }

  /** Next `n` bytes; a view into the cursor's buffer, valid until the next read. */
  async bytes(n: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(n) || n < 0) throw this.fail('ERR_MODEL_FILE_HEADER', `invalid length ${n}`)
    const start = this.position
    if (n > this.source.size - start) {
      throw this.fail(
        'ERR_MODEL_FILE_TRUNCATED',
        `needs ${n} bytes at offset ${start}, the file has ${this.source.size} bytes`,
      )
    }
    const end = start + n
    if (start < this.bufferStart || end > this.bufferStart + this.buffer.byteLength) {
      const length = Math.min(Math.max(n, this.chunk), this.source.size - start)
      this.buffer = await readExact(this.source, start, length, { what: this.context })
      this.bufferStart = start
    }
    this.position = end
    return this.buffer.subarray(start - this.bufferStart, end - this.bufferStart)
  }

  private async view(n: number): Promise<DataView> {
    const b = await this.bytes(n)
    return new DataView(b.buffer, b.byteOffset, n)
  }

  async u8(): Promise<number> {
    return (await this.view(1)).getUint8(0)
  }
  async i8(): Promise<number> {
    return (await this.view(1)).getInt8(0)
  }
  async u16(): Promise<number> {
    return (await this.view(2)).getUint16(0, true)
  }
  async i16(): Promise<number> {
    return (await this.view(2)).getInt16(0, true)
  }
  async u32(): Promise<number> {
    return (await this.view(4)).getUint32(0, true)
  }
  async i32(): Promise<number> {
    return (await this.view(4)).getInt32(0, true)
  }
  async f32(): Promise<number> {
    return (await this.view(4)).getFloat32(0, true)
  }
  async f64(): Promise<number> {
    return (await this.view(8)).getFloat64(0, true)
  }
  async u64(): Promise<bigint> {
    return (await this.view(8)).getBigUint64(0, true)
  }
  async i64(): Promise<bigint> {
    return (await this.view(8)).getBigInt64(0, true)
  }

  /** A u64 that must fit a safe integer no larger than `max` (a count or a length). */
  async count(what: string, max: number): Promise<number> {
    const v = await this.u64()
    if (v > BigInt(max)) throw this.fail('ERR_MODEL_FILE_HEADER', `${what} ${v} exceeds the cap of ${max}`)
    return Number(v)
  }

  fail(code: ModelFileErrorCode, message: string): ModelFileError {
    return new ModelFileError(code, this.source.name, `${this.context}: ${message}`)
  }
}
