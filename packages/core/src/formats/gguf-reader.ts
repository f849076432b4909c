import { ModelFileError } from '../errors.js'
import type { ByteSource } from '../weights/byte-source.js'
import { ByteCursor } from './byte-cursor.js'
import { GGML_TYPES, type GgmlTypeInfo, ggmlTypeName } from './ggml-types.js'

/** A metadata value: numbers (64-bit integers as bigint), booleans, strings and flat arrays. */
export type GgufValue = number | bigint | boolean | string | GgufArray
export interface GgufArray {
  readonly type: string
  readonly values: ReadonlyArray<number | bigint | boolean | string>
}

export interface GgufTensorInfo {
  readonly name: string
  /** ggml order: dims[0] is the innermost (contiguous) one, the reverse of PyTorch's. */
  readonly dims: readonly number[]
  readonly type: GgmlTypeInfo
  /** Absolute byte range in the file. */
  readonly begin: number
  readonly end: number
}

export interface GgufFile {
  readonly source: ByteSource
  readonly version: number
  readonly metadata: ReadonlyMap<string, GgufValue>
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>
  readonly alignment: number
  readonly dataStart: number
}

/** Caps on what a hostile header may make us allocate or loop over. */
export const GGUF_LIMITS = {
  tensors: 1 << 16,
  keys: 1 << 16,
  stringBytes: 1 << 24,
  arrayLength: 1 << 24,
  dims: 4, // GGML_MAX_DIMS
} as const

const MAGIC = 0x46554747 // "GGUF" read as a little-endian uint32
const DEFAULT_ALIGNMENT = 32

/** Value types as the GGUF spec numbers them, with their size when fixed. */
const VALUE_TYPES: ReadonlyArray<{ name: string; size: number }> = [
  { name: 'uint8', size: 1 },
  { name: 'int8', size: 1 },
  { name: 'uint16', size: 2 },
  { name: 'int16', size: 2 },
  { name: 'uint32', size: 4 },
  { name: 'int32', size: 4 },
  { name: 'float32', size: 4 },
  { name: 'bool', size: 1 },
  { name: 'string', size: 8 }, // at least its u64 length
  { name: 'array', size: 12 },
  { name: 'uint64', size: 8 },
  { name: 'int64', size: 8 },
  { name: 'float64', size: 8 },
]
const STRING = 8
const ARRAY = 9

/**
 * Parses a GGUF v2/v3 header (little-endian): magic, version, tensor and key counts, typed
 * key/value metadata, then tensor infos, with the data section at the next multiple of
 * general.alignment. Counts, lengths and dims are capped before anything is allocated, and every
 * tensor's bytes must lie inside the file without overlapping another's. Tensor data stays unread.
 */
export async function readGguf(source: ByteSource): Promise<GgufFile> {
  const cur = new ByteCursor(source)
  cur.context = 'GGUF header'
  if (source.size < 24) {
    throw cur.fail('ERR_MODEL_FILE_TRUNCATED', `file is ${source.size} bytes, shorter than a GGUF header`)
  }
  const magic = await cur.u32()
  if (magic !== MAGIC) {
    const got = Array.from(await peek(source, 4), (b) => b.toString(16).padStart(2, '0')).join(' ')
    throw cur.fail('ERR_MODEL_FILE_HEADER', `bad magic (bytes ${got}), expected "GGUF"`)
  }
  const version = await cur.u32()
  if (version !== 2 && version !== 3) {
    throw new ModelFileError(
      'ERR_MODEL_FILE_VERSION',
      source.name,
      `GGUF version ${version} is not supported (only 2 and 3)`,
    )
  }
  const tensorCount = await cur.count('tensor count', GGUF_LIMITS.tensors)
  const keyCount = await cur.count('metadata key count', GGUF_LIMITS.keys)

  const metadata = new Map<string, GgufValue>()
  for (let i = 0; i < keyCount; i++) {
    cur.context = `metadata key ${i} of ${keyCount}`
    const key = await readString(cur)
    cur.context = `metadata "${key}"`
    if (metadata.has(key)) throw cur.fail('ERR_MODEL_FILE_HEADER', 'key appears twice')
    metadata.set(key, await readValue(cur, await cur.u32(), true))
  }

  const alignmentValue = metadata.get('general.alignment') ?? DEFAULT_ALIGNMENT
  if (
    typeof alignmentValue !== 'number' ||
    alignmentValue < 1 ||
    (alignmentValue & (alignmentValue - 1)) !== 0
  ) {
    throw cur.fail(
      'ERR_MODEL_FILE_HEADER',
      `general.alignment ${String(alignmentValue)} is not a power of two`,
    )
  }
  const alignment = alignmentValue

  const infos: Array<{ name: string; dims: number[]; type: GgmlTypeInfo; offset: number; bytes: number }> = []
  const names = new Set<string>()
  for (let i = 0; i < tensorCount; i++) {
    cur.context = `tensor info ${i} of ${tensorCount}`
    const name = await readString(cur)
    cur.context = `tensor info "${name}"`
    const fail = (
      msg: string,
      code: 'ERR_MODEL_FILE_HEADER' | 'ERR_MODEL_FILE_SHAPE' = 'ERR_MODEL_FILE_HEADER',
    ) => new ModelFileError(code, source.name, msg, { tensor: name })
    if (names.has(name)) throw fail('tensor name appears twice')
    names.add(name)
    const nDims = await cur.u32()
    if (nDims < 1 || nDims > GGUF_LIMITS.dims)
      throw fail(`n_dims ${nDims} is outside [1, ${GGUF_LIMITS.dims}]`)
    const dims: number[] = []
    let elements = 1
    for (let d = 0; d < nDims; d++) {
      const dim = await cur.u64()
      if (dim < 1n || dim > BigInt(Number.MAX_SAFE_INTEGER))
        throw fail(`dimension ${dim} is invalid`, 'ERR_MODEL_FILE_SHAPE')
      dims.push(Number(dim))
      elements *= Number(dim)
      if (!Number.isSafeInteger(elements))
        throw fail(`dims [${dims.join(', ')}] are too large`, 'ERR_MODEL_FILE_SHAPE')
    }
    const typeId = await cur.u32()
    const type = GGML_TYPES.get(typeId)
    if (type === undefined) {
      throw new ModelFileError(
        'ERR_MODEL_FILE_DTYPE',
        source.name,
        `unsupported ggml type ${ggmlTypeName(typeId)}`,
        {
          tensor: name,
        },
      )
    }
    if ((dims[0] as number) % type.blockSize !== 0) {
      const msg = `innermost dimension ${dims[0]} is not a multiple of ${type.name}'s block of ${type.blockSize}`
      throw fail(msg, 'ERR_MODEL_FILE_SHAPE')
    }
    const offset = await cur.u64()
    if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`offset ${offset} is too large`)
    if (Number(offset) % alignment !== 0)
      throw fail(`offset ${offset} is not a multiple of the alignment ${alignment}`)
    infos.push({
      name,
      dims,
      type,
      offset: Number(offset),
      bytes: (elements / type.blockSize) * type.blockBytes,
    })
  }
  const dataStart = Math.ceil(cur.offset / alignment) * alignment

  const tensors = new Map<string, GgufTensorInfo>()
  for (const t of infos) {
    const begin = dataStart + t.offset
    const end = begin + t.bytes
    if (!Number.isSafeInteger(end) || end > source.size) {
      throw new ModelFileError(
        'ERR_MODEL_FILE_TRUNCATED',
        source.name,
        `data ends at byte ${end}, the file has ${source.size} bytes`,
        { tensor: t.name },
      )
    }
    tensors.set(
      t.name,
      Object.freeze({ name: t.name, dims: Object.freeze(t.dims), type: t.type, begin, end }),
    )
  }
  const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin)
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1] as GgufTensorInfo
    const t = sorted[i] as GgufTensorInfo
    if (t.begin < prev.end) {
      throw new ModelFileError('ERR_MODEL_FILE_HEADER', source.name, `data overlaps tensor ${prev.name}`, {
        tensor: t.name,
      })
    }
  }
  return { source, version, metadata, tensors, alignment, dataStart }
}

/** One strict decoder for every string (a vocabulary has hundreds of thousands). */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

async function readString(cur: ByteCursor): Promise<string> {
  const length = await cur.count('string length', GGUF_LIMITS.stringBytes)
  const bytes = await cur.bytes(length)
  try {
    return UTF8.decode(bytes)
  } catch {
    throw cur.fail('ERR_MODEL_FILE_HEADER', 'string is not valid UTF-8')
  }
}

async function readValue(cur: ByteCursor, type: number, arrayAllowed: boolean): Promise<GgufValue> {
  switch (type) {
    case 0:
      return cur.u8()
    case 1:
      return cur.i8()
    case 2:
      return cur.u16()
    case 3:
      return cur.i16()
    case 4:
      return cur.u32()
    case 5:
      return cur.i32()
    case 6:
      return shortestFloat32(await cur.f32())
    case 7: {
      const b = await cur.u8()
      if (b > 1) throw cur.fail('ERR_MODEL_FILE_HEADER', `bool value ${b} is neither 0 nor 1`)
      return b === 1
    }
    case STRING:
      return readString(cur)
    case ARRAY: {
      if (!arrayAllowed) throw cur.fail('ERR_MODEL_FILE_HEADER', 'nested arrays are not supported')
      const elementType = await cur.u32()
      const info = VALUE_TYPES[elementType]
      if (info === undefined)
        throw cur.fail('ERR_MODEL_FILE_HEADER', `unknown array element type ${elementType}`)
      const length = await cur.count('array length', GGUF_LIMITS.arrayLength)
      // Every element takes at least `size` bytes, so a length the file cannot hold fails here.
      if (length * info.size > cur.remaining) {
        throw cur.fail(
          'ERR_MODEL_FILE_TRUNCATED',
          `array of ${length} ${info.name} runs past the end of the file`,
        )
      }
      const values: Array<number | bigint | boolean | string> = []
      for (let i = 0; i < length; i++) values.push((await readValue(cur, elementType, false)) as number)
      return { type: info.name, values }
    }
    case 10: {
      const v = await cur.u64()
      return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v
    }
    case 11: {
      const v = await cur.i64()
      return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v
    }
    case 12:
      return cur.f64()
    default:
      throw cur.fail('ERR_MODEL_FILE_HEADER', `unknown value type ${type}`)
  }
}

/**
 * The shortest decimal that reads back as the same float32, so a stored 1e-5 comes back as 1e-5
 * rather than 9.999999747378752e-6 (the float32 is what the writer meant; config.json shows it).
 */
function shortestFloat32(x: number): number {
  if (!Number.isFinite(x)) return x
  for (let digits = 1; digits < 9; digits++) {
    const candidate = Number(x.toPrecision(digits))
    if (Math.fround(candidate) === x) return candidate
  }
  return x
}

async function peek(source: ByteSource, n: number): Promise<Uint8Array> {
  return source.read(0, Math.min(n, source.size))
}
