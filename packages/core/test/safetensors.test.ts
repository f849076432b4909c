import { describe, expect, it } from 'vitest'
import { ModelFileError, type ModelFileErrorCode } from '../src/errors.js'
import { type ByteSource, bytesSource } from '../src/weights/byte-source.js'
import { encodeSafetensors, SafetensorsReader, safetensorsLayout } from '../src/weights/safetensors.js'
import type { DType, RawTensor } from '../src/weights/tensor.js'

const FILE = 'model-00001-of-00002.safetensors'

const bytesOf = (view: ArrayBufferView): Uint8Array =>
  new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice()

/** A file from a literal header string, as another writer might have produced it. */
function rawFile(header: string | Uint8Array, data = new Uint8Array(0), lengthField?: number): Uint8Array {
  const json = typeof header === 'string' ? new TextEncoder().encode(header) : header
  const out = new Uint8Array(8 + json.byteLength + data.byteLength)
  const view = new DataView(out.buffer)
  const length = lengthField ?? json.byteLength
  view.setUint32(0, length % 2 ** 32, true)
  view.setUint32(4, Math.floor(length / 2 ** 32), true)
  out.set(json, 8)
  out.set(data, 8 + json.byteLength)
  return out
}

function entryFile(entry: unknown, dataBytes = 64): Uint8Array {
  return rawFile(JSON.stringify({ w: entry }), new Uint8Array(dataBytes))
}

/** Records every read so tests can prove which byte ranges were touched. */
function countingSource(bytes: Uint8Array): ByteSource & { reads: Array<[number, number]> } {
  const inner = bytesSource(FILE, bytes)
  const reads: Array<[number, number]> = []
  return {
    name: inner.name,
    size: inner.size,
    reads,
    read(offset, length, signal) {
      reads.push([offset, length])
      return inner.read(offset, length, signal)
    },
  }
}

const goodTensors = (): Array<{ name: string } & RawTensor> => [
  { name: 'a', dtype: 'F32', shape: [2, 3], data: bytesOf(new Float32Array([1, 2, 3, 4, 5, 6])) },
  { name: 'b', dtype: 'I64', shape: [2], data: bytesOf(new BigInt64Array([-1n, 2n ** 40n])) },
]
const goodFile = () => encodeSafetensors(goodTensors())

async function failure(run: () => unknown): Promise<unknown> {
  try {
    await run()
  } catch (err) {
    return err
  }
  throw new Error('expected the call to fail')
}

function expectFileError(err: unknown, code: ModelFileErrorCode, file: string, tensor?: string): void {
  expect(err).toBeInstanceOf(ModelFileError)
  const e = err as ModelFileError
  expect(e.code).toBe(code)
  expect(e.file).toBe(file)
  expect(e.message).toContain(file)
  expect(e.tensor).toBe(tensor)
  if (tensor !== undefined) expect(e.message).toContain(`tensor ${tensor}`)
}

describe('safetensors round trip', () => {
  const rng = (n: number, seed: number) =>
    Uint8Array.from({ length: n }, (_, i) => (i * 131 + seed * 17) & 0xff)
  const tensors: Array<{ name: string } & RawTensor> = [
    {
      name: 'f32',
      dtype: 'F32',
      shape: [3, 2],
      data: bytesOf(new Float32Array([0.5, -1, 3.25, 1e-8, -0, 7])),
    },
    { name: 'f64', dtype: 'F64', shape: [2], data: bytesOf(new Float64Array([Math.PI, -1e300])) },
    { name: 'f16', dtype: 'F16', shape: [5], data: rng(10, 1) },
    { name: 'bf16', dtype: 'BF16', shape: [2, 2], data: rng(8, 2) },
    { name: 'i64', dtype: 'I64', shape: [1], data: bytesOf(new BigInt64Array([-(2n ** 62n)])) },
    { name: 'i32', dtype: 'I32', shape: [3], data: bytesOf(new Int32Array([-7, 0, 2 ** 31 - 1])) },
    { name: 'i16', dtype: 'I16', shape: [1, 1, 3], data: bytesOf(new Int16Array([-3, 4, 5])) },
    { name: 'i8', dtype: 'I8', shape: [3], data: bytesOf(new Int8Array([-128, 0, 127])) },
    { name: 'u8', dtype: 'U8', shape: [4], data: Uint8Array.of(0, 1, 254, 255) },
    { name: 'bool', dtype: 'BOOL', shape: [3], data: Uint8Array.of(1, 0, 1) },
    { name: 'scalar', dtype: 'I32', shape: [], data: bytesOf(new Int32Array([42])) },
    { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Uint8Array(0) },
    { name: '__proto__', dtype: 'U8', shape: [1], data: Uint8Array.of(9) },
    { name: 'model.layers.0.self_attn.q_proj.weight ✓', dtype: 'F16', shape: [1, 2], data: rng(4, 3) },
  ]
  const metadata = { format: 'pt', note: 'ünïcode "quoted"' }
  const file = encodeSafetensors(tensors, metadata)

  it('reads back every dtype, shape and the metadata', async () => {
    const reader = await SafetensorsReader.open(bytesSource(FILE, file))
    expect([...reader.tensors.keys()]).toEqual(tensors.map((t) => t.name))
    expect(reader.metadata).toEqual(metadata)
    for (const t of tensors) {
      const got = await reader.read(t.name, { dtype: t.dtype, shape: t.shape })
      expect(got.dtype).toBe(t.dtype)
      expect(got.shape).toEqual(t.shape)
      expect(Array.from(got.data)).toEqual(Array.from(t.data))
      const info = reader.info(t.name)
      expect(Array.from(file.subarray(info.begin, info.end))).toEqual(Array.from(t.data))
    }
    const f32 = await reader.read('f32')
    const floats = new Float32Array(f32.data.slice().buffer)
    expect(Array.from(floats)).toEqual([0.5, -1, 3.25, Math.fround(1e-8), -0, 7])
  })

  it('pads the header with spaces to an 8-byte multiple and stores relative offsets', () => {
    const view = new DataView(file.buffer, file.byteOffset)
    expect(view.getUint32(4, true)).toBe(0)
    const n = view.getUint32(0, true)
    expect((8 + n) % 8).toBe(0)
    const text = new TextDecoder().decode(file.subarray(8, 8 + n))
    expect(text.startsWith('{')).toBe(true)
    const json = text.trimEnd()
    expect(json.endsWith('}')).toBe(true)
    expect(n - new TextEncoder().encode(json).byteLength).toBeLessThan(8)
    const header = JSON.parse(text) as Record<string, { data_offsets: number[] }>
    expect(header.f32?.data_offsets).toEqual([0, 24])
    expect(header.f64?.data_offsets).toEqual([24, 40])
    const lastName = 'model.layers.0.self_attn.q_proj.weight ✓'
    expect(header[lastName]?.data_offsets[1]).toBe(file.byteLength - 8 - n)
  })

  it('safetensorsLayout plus streamed tensor bytes equals encodeSafetensors', async () => {
    const layout = safetensorsLayout(tensors, metadata)
    const streamed = new Uint8Array(layout.totalBytes)
    streamed.set(layout.header, 0)
    let cursor = layout.header.byteLength
    for (const t of tensors) {
      expect(layout.offsets.get(t.name)).toEqual({ begin: cursor, end: cursor + t.data.byteLength })
      streamed.set(t.data, cursor)
      cursor += t.data.byteLength
    }
    expect(cursor).toBe(layout.totalBytes)
    expect(Array.from(streamed)).toEqual(Array.from(file))
    const reader = await SafetensorsReader.open(bytesSource(FILE, streamed))
    for (const [name, range] of layout.offsets) {
      const info = reader.info(name)
      expect({ begin: info.begin, end: info.end }).toEqual(range)
    }
  })

  it('omits __metadata__ unless given and reads a file with no metadata as {}', async () => {
    const plain = encodeSafetensors(goodTensors())
    expect(new TextDecoder().decode(plain)).not.toContain('__metadata__')
    const reader = await SafetensorsReader.open(bytesSource(FILE, plain))
    expect(reader.metadata).toEqual({})
  })

  it('reads a hand-built file as the Python library lays it out', async () => {
    // JSON key order need not follow data order; Python sorts entries by dtype size, then name.
    const header =
      '{"__metadata__":{"format":"pt"},"bias":{"dtype":"F16","shape":[2],"data_offsets":[16,20]},' +
      '"weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}'
    const padded = header.padEnd(Math.ceil((header.length + 8) / 8) * 8 - 8, ' ')
    const data = new Uint8Array(20)
    const dv = new DataView(data.buffer)
    const values = [1.5, -2, 0.25, 1024]
    for (let i = 0; i < values.length; i++) dv.setFloat32(i * 4, values[i] ?? Number.NaN, true)
    data.set([0x00, 0x3c, 0x00, 0xc0], 16) // F16 1.0, -2.0
    const reader = await SafetensorsReader.open(bytesSource(FILE, rawFile(padded, data)))
    expect(reader.metadata).toEqual({ format: 'pt' })
    const info = reader.info('weight')
    expect(info).toEqual({
      name: 'weight',
      dtype: 'F32',
      shape: [2, 2],
      begin: 8 + padded.length,
      end: 24 + padded.length,
    })
    const t = await reader.read('weight', { dtype: ['F16', 'F32'], shape: [2, 2] })
    const back = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength)
    expect([0, 1, 2, 3].map((i) => back.getFloat32(i * 4, true))).toEqual([1.5, -2, 0.25, 1024])
    const bias = await reader.read('bias', { dtype: 'F16', shape: [2] })
    expect(Array.from(bias.data)).toEqual([0x00, 0x3c, 0x00, 0xc0])
    expect(reader.info('bias').begin).toBe(reader.info('weight').end)
    expect(reader.has('weight')).toBe(true)
    expect(reader.has('__metadata__')).toBe(false)
  })
})

describe('SafetensorsReader reads only what it needs', () => {
  it('open reads the length and header only; read fetches exactly one tensor range', async () => {
    const big = (seed: number) => Uint8Array.from({ length: 4096 }, (_, i) => (i + seed) & 0xff)
    const file = encodeSafetensors([
      { name: 'first', dtype: 'U8', shape: [4096], data: big(1) },
      { name: 'mid', dtype: 'F32', shape: [32, 32], data: big(2) },
      { name: 'last', dtype: 'U8', shape: [64, 64], data: big(3) },
    ])
    const source = countingSource(file)
    const reader = await SafetensorsReader.open(source)
    const n = reader.dataStart - 8
    expect(source.reads).toEqual([
      [0, 8],
      [8, n],
    ])
    const info = reader.info('mid')
    const t = await reader.read('mid')
    expect(source.reads.slice(2)).toEqual([[info.begin, 4096]])
    expect(Array.from(t.data)).toEqual(Array.from(big(2)))
    const touched = source.reads.reduce((sum, [, len]) => sum + len, 0)
    expect(touched).toBe(8 + n + 4096)
    // Everything except the two tensors nobody asked for.
    expect(touched).toBe(file.byteLength - 2 * 4096)
  })

  it('checks expectations before touching the tensor bytes', async () => {
    const source = countingSource(goodFile())
    const reader = await SafetensorsReader.open(source)
    await failure(() => reader.read('a', { shape: [6] }))
    expect(source.reads.length).toBe(2)
  })

  it('passes an abort through unwrapped', async () => {
    const reader = await SafetensorsReader.open(bytesSource(FILE, goodFile()))
    const controller = new AbortController()
    const reason = new Error('stop')
    controller.abort(reason)
    expect(await failure(() => reader.read('a', {}, controller.signal))).toBe(reason)
    expect(
      await failure(() =>
        SafetensorsReader.open(bytesSource(FILE, goodFile()), { signal: controller.signal }),
      ),
    ).toBe(reason)
  })

  it('wraps a throwing source as ERR_MODEL_FILE_READ with the cause', async () => {
    const cause = new Error('ECONNRESET')
    const source: ByteSource = { name: FILE, size: 1000, read: () => Promise.reject(cause) }
    const err = await failure(() => SafetensorsReader.open(source))
    expectFileError(err, 'ERR_MODEL_FILE_READ', FILE)
    expect((err as Error).cause).toBe(cause)
    expect((err as Error).message).toContain('ECONNRESET')
  })
})

/** Serves the length prefix and header in full but only half of any tensor read. */
function shortReadSource(bytes: Uint8Array): ByteSource {
  const inner = bytesSource(FILE, bytes)
  return {
    name: FILE,
    size: bytes.byteLength,
    async read(offset, length) {
      const got = await inner.read(offset, length)
      return offset <= 8 ? got : got.subarray(0, length >> 1)
    },
  }
}

interface CorruptCase {
  name: string
  source: () => ByteSource
  open?: { maxHeaderBytes?: number }
  act?: (reader: SafetensorsReader) => unknown
  code: ModelFileErrorCode
  tensor?: string
}

const fromBytes = (make: () => Uint8Array) => () => bytesSource(FILE, make())
const F32_24 = { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] }

const corrupt: CorruptCase[] = [
  {
    name: 'truncated data',
    source: fromBytes(() => goodFile().subarray(0, goodFile().byteLength - 5)),
    code: 'ERR_MODEL_FILE_TRUNCATED',
    tensor: 'b',
  },
  {
    name: 'truncated header',
    source: fromBytes(() => goodFile().subarray(0, 40)),
    code: 'ERR_MODEL_FILE_HEADER',
  },
  {
    name: 'shorter than the length prefix',
    source: fromBytes(() => new Uint8Array(5)),
    code: 'ERR_MODEL_FILE_TRUNCATED',
  },
  {
    name: 'bad header JSON',
    source: fromBytes(() => rawFile('{"w": {"dtype"')),
    code: 'ERR_MODEL_FILE_HEADER',
  },
  { name: 'empty header', source: fromBytes(() => rawFile('')), code: 'ERR_MODEL_FILE_HEADER' },
  { name: 'header is an array', source: fromBytes(() => rawFile('[1, 2]')), code: 'ERR_MODEL_FILE_HEADER' },
  { name: 'header is null', source: fromBytes(() => rawFile('null')), code: 'ERR_MODEL_FILE_HEADER' },
  {
    name: 'header is not UTF-8',
    source: fromBytes(() => rawFile(Uint8Array.of(0x7b, 0xff, 0xfe, 0x7d))),
    code: 'ERR_MODEL_FILE_HEADER',
  },
  {
    name: 'header length past EOF',
    source: fromBytes(() => rawFile('{}', new Uint8Array(10), 1000)),
    code: 'ERR_MODEL_FILE_HEADER',
  },
  {
    name: 'huge header length',
    source: fromBytes(() => rawFile('{}', new Uint8Array(10), 2 ** 40)),
    code: 'ERR_MODEL_FILE_HEADER',
  },
  {
    name: 'header length over a custom cap',
    source: fromBytes(goodFile),
    open: { maxHeaderBytes: 16 },
    code: 'ERR_MODEL_FILE_HEADER',
  },
  {
    name: 'unknown dtype',
    source: fromBytes(() => entryFile({ ...F32_24, dtype: 'F8_E4M3' })),
    code: 'ERR_MODEL_FILE_DTYPE',
    tensor: 'w',
  },
  {
    name: 'missing dtype',
    source: fromBytes(() => entryFile({ shape: [2, 3], data_offsets: [0, 24] })),
    code: 'ERR_MODEL_FILE_HEADER',
    tensor: 'w',
  },
  {
    name: 'entry not an object',
    source: fromBytes(() => entryFile([1])),
    code: 'ERR_MODEL_FILE_HEADER',
    tensor: 'w',
  },
  {
    name: 'wrong byte length for shape',
    source: fromBytes(() => entryFile({ ...F32_24, data_offsets: [0, 20] })),
    code: 'ERR_MODEL_FILE_SHAPE',
    tensor: 'w',
  },
  {
    name: 'shape whose byte size overflows',
    source: fromBytes(() => entryFile({ ...F32_24, shape: [2 ** 30, 2 ** 30, 2 ** 30] })),
    code: 'ERR_MODEL_FILE_SHAPE',
    tensor: 'w',
  },
  {
    name: 'negative shape',
    source: fromBytes(() => entryFile({ ...F32_24, shape: [-2, -3] })),
    code: 'ERR_MODEL_FILE_HEADER',
    tensor: 'w',
  },
  {
    name: 'float shape',
    source: fromBytes(() => entryFile({ ...F32_24, shape: [1.5, 4] })),
    code: 'ERR_MODEL_FILE_HEADER',
    tensor: 'w',
  },
  {
    name: 'shape not an array',
    source: fromBytes(() => entryFile({ ...F32_24, shape: '2x3' })),
    code: 'ERR_MODEL_FILE_HEADER',
    tensor: 'w',
  },
  {
    name: 'reversed data_offsets',
    source: fromBytes(() => entryFile({ dtype: 'U8', shape: [0], data_offsets: [8, 0] })),
    code: 'ERR_MODEL_FILE_HEADER',
    tensor: 'w',
  },
  {
    name: 'data_offsets of wrong arity',
    source: fromBytes(() => entryFile({ ...F32_24, data_offsets: [0] })),
    code: 'ERR_MODEL_FILE_HEADER',
    tensor: 'w',
  },
  {
    name: 'negative data_offsets',
    source: fromBytes(() => entryFile({ ...F32_24, data_offsets: [-24, 0] })),
    code: 'ERR_MODEL_FILE_HEADER',
    tensor: 'w',
  },
  {
    name: 'overlapping offsets',
    source: fromBytes(() =>
      rawFile(
        JSON.stringify({
          x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
          y: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
        }),
        new Uint8Array(24),
      ),
    ),
    code: 'ERR_MODEL_FILE_HEADER',
    tensor: 'y',
  },
  {
    name: 'metadata with a non-string value',
    source: fromBytes(() => rawFile(JSON.stringify({ __metadata__: { step: 3 } }))),
    code: 'ERR_MODEL_FILE_HEADER',
  },
  {
    name: 'missing tensor (read)',
    source: fromBytes(goodFile),
    act: (r) => r.read('model.norm.weight'),
    code: 'ERR_MODEL_TENSOR_MISSING',
    tensor: 'model.norm.weight',
  },
  {
    name: 'missing tensor (info)',
    source: fromBytes(goodFile),
    act: (r) => r.info('lm_head.weight'),
    code: 'ERR_MODEL_TENSOR_MISSING',
    tensor: 'lm_head.weight',
  },
  {
    name: 'expected dtype mismatch',
    source: fromBytes(goodFile),
    act: (r) => r.read('a', { dtype: 'F16' }),
    code: 'ERR_MODEL_FILE_DTYPE',
    tensor: 'a',
  },
  {
    name: 'expected dtype list mismatch',
    source: fromBytes(goodFile),
    act: (r) => r.read('a', { dtype: ['F16', 'BF16'] }),
    code: 'ERR_MODEL_FILE_DTYPE',
    tensor: 'a',
  },
  {
    name: 'expected shape mismatch',
    source: fromBytes(goodFile),
    act: (r) => r.read('a', { shape: [3, 2] }),
    code: 'ERR_MODEL_FILE_SHAPE',
    tensor: 'a',
  },
  {
    name: 'expected rank mismatch',
    source: fromBytes(goodFile),
    act: (r) => r.read('a', { dtype: 'F32', shape: [6] }),
    code: 'ERR_MODEL_FILE_SHAPE',
    tensor: 'a',
  },
  {
    name: 'short read from the source',
    source: () => shortReadSource(goodFile()),
    act: (r) => r.read('b'),
    code: 'ERR_MODEL_FILE_TRUNCATED',
    tensor: 'b',
  },
  {
    name: 'source reports a bogus size',
    source: () => ({ ...bytesSource(FILE, goodFile()), size: Number.NaN }),
    code: 'ERR_MODEL_FILE_READ',
  },
]

describe('SafetensorsReader rejects corrupt files', () => {
  it.each(corrupt)('$name → $code', async ({ source, open, act, code, tensor }) => {
    const err = await failure(async () => {
      const reader = await SafetensorsReader.open(source(), open)
      if (act === undefined) throw new Error('open unexpectedly succeeded')
      return act(reader)
    })
    expectFileError(err, code, FILE, tensor)
  })

  it('the corrupt table covers every error code', () => {
    const codes = new Set(corrupt.map((c) => c.code))
    expect([...codes].sort()).toEqual([
      'ERR_MODEL_FILE_DTYPE',
      'ERR_MODEL_FILE_HEADER',
      'ERR_MODEL_FILE_READ',
      'ERR_MODEL_FILE_SHAPE',
      'ERR_MODEL_FILE_TRUNCATED',
      'ERR_MODEL_TENSOR_MISSING',
    ])
  })
})

describe('safetensors writer rejects bad input', () => {
  const WRITER = 'safetensors writer'
  const t = (name: string, dtype: DType = 'U8', shape: number[] = [2], data = new Uint8Array(2)) => ({
    name,
    dtype,
    shape,
    data,
  })
  const cases: Array<{ name: string; run: () => unknown; code: ModelFileErrorCode; tensor?: string }> = [
    {
      name: 'duplicate names',
      run: () => encodeSafetensors([t('x'), t('x')]),
      code: 'ERR_MODEL_FILE_HEADER',
      tensor: 'x',
    },
    {
      name: 'reserved __metadata__ name',
      run: () => safetensorsLayout([t('__metadata__')]),
      code: 'ERR_MODEL_FILE_HEADER',
      tensor: '__metadata__',
    },
    { name: 'empty name', run: () => safetensorsLayout([t('')]), code: 'ERR_MODEL_FILE_HEADER' },
    {
      name: 'unknown dtype',
      run: () => safetensorsLayout([t('x', 'Q4' as DType)]),
      code: 'ERR_MODEL_FILE_DTYPE',
      tensor: 'x',
    },
    {
      name: 'negative shape',
      run: () => safetensorsLayout([t('x', 'U8', [-2])]),
      code: 'ERR_MODEL_FILE_SHAPE',
      tensor: 'x',
    },
    {
      name: 'data length does not match shape',
      run: () => encodeSafetensors([t('x', 'F32', [2], new Uint8Array(7))]),
      code: 'ERR_MODEL_FILE_SHAPE',
      tensor: 'x',
    },
    {
      name: 'non-string metadata',
      run: () => encodeSafetensors([t('x')], { step: 3 as unknown as string }),
      code: 'ERR_MODEL_FILE_HEADER',
    },
  ]
  it.each(cases)('$name → $code', async ({ run, code, tensor }) => {
    expectFileError(await failure(run), code, WRITER, tensor)
  })
})

describe('bytesSource', () => {
  it('returns short reads at the end and rejects negative ranges', async () => {
    const src = bytesSource('buf', Uint8Array.of(1, 2, 3, 4))
    expect(src.size).toBe(4)
    expect(Array.from(await src.read(1, 2))).toEqual([2, 3])
    expect(Array.from(await src.read(3, 10))).toEqual([4])
    expect((await src.read(10, 2)).byteLength).toBe(0)
    expect(await failure(() => src.read(-1, 2))).toBeInstanceOf(RangeError)
    expect(await failure(() => src.read(0, 1.5))).toBeInstanceOf(RangeError)
  })
})
