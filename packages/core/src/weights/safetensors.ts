import { ModelFileError, type ModelFileErrorCode } from '../errors.js'
import { type ByteSource, readExact } from './byte-source.js'
import { DTYPE_BYTES, type DType, type RawTensor } from './tensor.js'

/** One tensor's place in the file; begin/end are absolute so a peer can range-fetch it alone. */
export interface TensorInfo {
  readonly name: string
  readonly dtype: DType
  readonly shape: readonly number[]
  readonly begin: number
  readonly end: number
}

export interface TensorExpectation {
  dtype?: DType | readonly DType[]
  shape?: readonly number[]
}

const DEFAULT_MAX_HEADER_BYTES = 100_000_000
const METADATA_KEY = '__metadata__'
/** Stands in for a file name when the writer rejects its input. */
const WRITER = 'safetensors writer'

export class SafetensorsReader {
  private constructor(
    readonly source: ByteSource,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
    /** Absolute offset of the data section: 8 + header length. */
    readonly dataStart: number,
  ) {}

  /** Reads only the 8-byte header length and the header itself; tensor bytes stay unread. */
  static async open(
    source: ByteSource,
    options: { maxHeaderBytes?: number; signal?: AbortSignal } = {},
  ): Promise<SafetensorsReader> {
    const file = String(source.name)
    const size = source.size
    const maxHeader = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES
    if (!Number.isSafeInteger(size) || size < 0) {
      throw fail('ERR_MODEL_FILE_READ', file, `source reports an invalid size (${String(size)})`)
    }
    if (size < 8) {
      throw fail('ERR_MODEL_FILE_TRUNCATED', file, `file is ${size} bytes, too short for the header length`)
    }
    const lengthBytes = await readExact(source, 0, 8, { signal: options.signal })
    const view = new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 8)
    // Above 2^53 this loses precision, but such a value fails the cap check regardless.
    const headerLength = view.getUint32(4, true) * 2 ** 32 + view.getUint32(0, true)
    const headerError = (msg: string) =>
      fail('ERR_MODEL_FILE_HEADER', file, `header length ${headerLength} ${msg}`)
    if (headerLength > maxHeader) throw headerError(`exceeds the cap of ${maxHeader} bytes`)
    if (headerLength > size - 8) throw headerError(`runs past the end of the file (${size} bytes)`)
    const headerBytes = await readExact(source, 8, headerLength, { signal: options.signal })
    const dataStart = 8 + headerLength
    const { tensors, metadata } = parseHeader(file, headerBytes, dataStart, size)
    return new SafetensorsReader(source, tensors, metadata, dataStart)
  }

  get name(): string {
    return this.source.name
  }

  has(name: string): boolean {
    return this.tensors.has(name)
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name)
    if (info === undefined) throw fail('ERR_MODEL_TENSOR_MISSING', this.name, 'tensor not in file', name)
    return info
  }

  /** Range-reads one tensor after checking it against what the caller expects. */
  async read(name: string, expect: TensorExpectation = {}, signal?: AbortSignal): Promise<RawTensor> {
    const info = this.info(name)
    if (expect.dtype !== undefined) {
      const allowed: readonly DType[] = typeof expect.dtype === 'string' ? [expect.dtype] : expect.dtype
      if (!allowed.includes(info.dtype)) {
        const want = allowed.join(' or ')
        throw fail('ERR_MODEL_FILE_DTYPE', this.name, `expected dtype ${want}, file has ${info.dtype}`, name)
      }
    }
    if (expect.shape !== undefined && !sameShape(expect.shape, info.shape)) {
      const msg = `expected shape ${fmtShape(expect.shape)}, file has ${fmtShape(info.shape)}`
      throw fail('ERR_MODEL_FILE_SHAPE', this.name, msg, name)
    }
    const data = await readExact(this.source, info.begin, info.end - info.begin, { signal, tensor: name })
    return { dtype: info.dtype, shape: info.shape, data }
  }
}

/**
 * Header and tensor offsets for a file whose tensors follow in `entries` order, so a caller can
 * stream several GB without holding them. `header` is the 8-byte length plus space-padded JSON;
 * `offsets` are absolute (like TensorInfo), `totalBytes` is the final file size.
 */
export function safetensorsLayout(
  entries: ReadonlyArray<{ name: string; dtype: DType; shape: readonly number[] }>,
  metadata?: Record<string, string>,
): { header: Uint8Array; offsets: Map<string, { begin: number; end: number }>; totalBytes: number } {
  // Built by hand rather than via an object so a tensor named "__proto__" cannot misbehave.
  const parts: string[] = []
  if (metadata !== undefined)
    parts.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(checkMetadata(metadata))}`)
  const relative = new Map<string, { begin: number; end: number }>()
  let cursor = 0
  for (const { name, dtype, shape } of entries) {
    if (typeof name !== 'string' || name === '')
      throw fail('ERR_MODEL_FILE_HEADER', WRITER, 'empty tensor name')
    if (name === METADATA_KEY) throw fail('ERR_MODEL_FILE_HEADER', WRITER, 'reserved tensor name', name)
    if (relative.has(name)) throw fail('ERR_MODEL_FILE_HEADER', WRITER, 'duplicate tensor name', name)
    if (!isDType(dtype)) throw fail('ERR_MODEL_FILE_DTYPE', WRITER, `unknown dtype ${String(dtype)}`, name)
    if (!isShape(shape))
      throw fail('ERR_MODEL_FILE_SHAPE', WRITER, `invalid shape ${JSON.stringify(shape)}`, name)
    const bytes = byteLength(shape, dtype)
    if (bytes === undefined || !Number.isSafeInteger(cursor + bytes)) {
      throw fail('ERR_MODEL_FILE_SHAPE', WRITER, `shape ${fmtShape(shape)} is too large`, name)
    }
    relative.set(name, { begin: cursor, end: cursor + bytes })
    const entry = { dtype, shape: [...shape], data_offsets: [cursor, cursor + bytes] }
    parts.push(`${JSON.stringify(name)}:${JSON.stringify(entry)}`)
    cursor += bytes
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`)
  // Padding keeps the data section 8-byte aligned so typed-array views need no copy.
  const padded = Math.ceil(json.byteLength / 8) * 8
  const header = new Uint8Array(8 + padded).fill(0x20, 8 + json.byteLength)
  const view = new DataView(header.buffer)
  view.setUint32(0, padded % 2 ** 32, true)
  view.setUint32(4, Math.floor(padded / 2 ** 32), true)
  header.set(json, 8)
  const offsets = new Map<string, { begin: number; end: number }>()
  for (const [name, r] of relative)
    offsets.set(name, { begin: header.byteLength + r.begin, end: header.byteLength + r.end })
  return { header, offsets, totalBytes: header.byteLength + cursor }
}

/** Whole file in memory; for small files and tests. */
export function encodeSafetensors(
  tensors: ReadonlyArray<{ name: string } & RawTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const { header, offsets, totalBytes } = safetensorsLayout(tensors, metadata)
  const out = new Uint8Array(totalBytes)
  out.set(header, 0)
  for (const t of tensors) {
    const range = offsets.get(t.name)
    if (range === undefined) throw new Error(`unreachable: no offset for ${t.name}`)
    if (!(t.data instanceof Uint8Array) || t.data.byteLength !== range.end - range.begin) {
      const got = t.data instanceof Uint8Array ? `${t.data.byteLength} bytes` : 'no byte array'
      const msg = `${t.dtype} ${fmtShape(t.shape)} needs ${range.end - range.begin} bytes, got ${got}`
      throw fail('ERR_MODEL_FILE_SHAPE', WRITER, msg, t.name)
    }
    out.set(t.data, range.begin)
  }
  return out
}

function parseHeader(
  file: string,
  bytes: Uint8Array,
  dataStart: number,
  fileSize: number,
): { tensors: Map<string, TensorInfo>; metadata: Readonly<Record<string, string>> } {
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (cause) {
    throw fail(
      'ERR_MODEL_FILE_HEADER',
      file,
      `header is not UTF-8 JSON: ${describe(cause)}`,
      undefined,
      cause,
    )
  }
  if (!isRecord(json)) throw fail('ERR_MODEL_FILE_HEADER', file, 'header is not a JSON object')
  const tensors = new Map<string, TensorInfo>()
  let metadata: Readonly<Record<string, string>> = Object.freeze({})
  for (const [name, entry] of Object.entries(json)) {
    if (name === METADATA_KEY) {
      if (!isRecord(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
        throw fail('ERR_MODEL_FILE_HEADER', file, '__metadata__ must map strings to strings')
      }
      metadata = Object.freeze(Object.fromEntries(Object.entries(entry) as Array<[string, string]>))
      continue
    }
    tensors.set(name, parseEntry(file, name, entry, dataStart, fileSize))
  }
  checkOverlap(file, tensors)
  return { tensors, metadata }
}

function parseEntry(file: string, name: string, entry: unknown, dataStart: number, size: number): TensorInfo {
  const bad = (msg: string) => fail('ERR_MODEL_FILE_HEADER', file, msg, name)
  if (!isRecord(entry)) throw bad('entry is not an object')
  const { dtype, shape, data_offsets: offsets } = entry
  if (typeof dtype !== 'string') throw bad('dtype is missing or not a string')
  const fileError = (code: ModelFileErrorCode, msg: string) => fail(code, file, msg, name)
  if (!isDType(dtype)) throw fileError('ERR_MODEL_FILE_DTYPE', `unknown dtype ${JSON.stringify(dtype)}`)
  if (!isShape(shape)) throw bad(`shape ${JSON.stringify(shape)} is not an array of non-negative integers`)
  const [begin, end] = Array.isArray(offsets) && offsets.length === 2 ? offsets : []
  if (!isIndex(begin) || !isIndex(end) || begin > end) {
    throw bad(`data_offsets ${JSON.stringify(offsets)} is not [begin, end] with begin <= end`)
  }
  const expected = byteLength(shape, dtype)
  if (expected !== end - begin) {
    const want = expected === undefined ? 'more than 2^53 bytes' : `${expected} bytes`
    throw fileError(
      'ERR_MODEL_FILE_SHAPE',
      `${dtype} ${fmtShape(shape)} needs ${want}, offsets span ${end - begin}`,
    )
  }
  if (end > size - dataStart) {
    throw fileError(
      'ERR_MODEL_FILE_TRUNCATED',
      `data ends at byte ${dataStart + end}, file has ${size} bytes`,
    )
  }
  const info = {
    name,
    dtype,
    shape: Object.freeze([...shape]),
    begin: dataStart + begin,
    end: dataStart + end,
  }
  return Object.freeze(info)
}

function checkOverlap(file: string, tensors: ReadonlyMap<string, TensorInfo>): void {
  // Empty tensors occupy no bytes, so they cannot collide with anything.
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin)
  let prev: TensorInfo | undefined
  for (const t of sorted) {
    if (prev !== undefined && t.begin < prev.end) {
      throw fail('ERR_MODEL_FILE_HEADER', file, `data overlaps tensor ${prev.name}`, t.name)
    }
    if (prev === undefined || t.end > prev.end) prev = t
  }
}

function checkMetadata(metadata: Record<string, string>): Record<string, string> {
  if (!isRecord(metadata)) throw fail('ERR_MODEL_FILE_HEADER', WRITER, '__metadata__ must be an object')
  const entries = Object.entries(metadata)
  for (const [key, value] of entries) {
    if (typeof value !== 'string')
      throw fail('ERR_MODEL_FILE_HEADER', WRITER, `__metadata__.${key} is not a string`)
  }
  return Object.fromEntries(entries)
}

function fail(code: ModelFileErrorCode, file: string, msg: string, tensor?: string, cause?: unknown) {
  const options: { tensor?: string; cause?: unknown } = cause === undefined ? {} : { cause }
  if (tensor !== undefined) options.tensor = tensor
  return new ModelFileError(code, file, msg, options)
}

/** Bytes a tensor occupies, or undefined when that exceeds 2^53. */
function byteLength(shape: readonly number[], dtype: DType): number | undefined {
  if (shape.includes(0)) return 0
  let n = DTYPE_BYTES[dtype]
  for (const d of shape) {
    n *= d
    if (!Number.isSafeInteger(n)) return undefined
  }
  return n
}

function isDType(value: unknown): value is DType {
  return typeof value === 'string' && Object.hasOwn(DTYPE_BYTES, value)
}

function isIndex(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
}

function isShape(value: unknown): value is readonly number[] {
  return Array.isArray(value) && value.every(isIndex)
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i])
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
