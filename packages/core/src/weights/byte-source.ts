import { ModelFileError } from '../errors.js'

/**
 * Random-access bytes: a file, an HTTP Range endpoint or a buffer. Core has no fs, so every
 * reader goes through this. A read past the end may come back short; it must not pad.
 */
export interface ByteSource {
  readonly name: string
  readonly size: number
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>
}

/** Zero-copy: reads return views into `bytes`, so mutating a result mutates the buffer. */
export function bytesSource(name: string, bytes: Uint8Array): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    async read(offset, length, signal) {
      signal?.throwIfAborted()
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
        throw new RangeError(`${name}: invalid read range (offset ${offset}, length ${length})`)
      }
      const start = Math.min(offset, bytes.byteLength)
      return bytes.subarray(start, Math.min(start + length, bytes.byteLength))
    },
  }
}

export interface ReadExactOptions {
  /** Prefixed to error messages, e.g. "tensor x" or "GGUF header". */
  readonly what?: string
  /** The tensor being read, recorded on the ModelFileError. */
  readonly tensor?: string
  readonly signal?: AbortSignal | undefined
}

/**
 * Reads exactly `length` bytes at `offset`. A failed read is ERR_MODEL_FILE_READ, a short one
 * ERR_MODEL_FILE_TRUNCATED, a source that returns no bytes or too many ERR_MODEL_FILE_READ; an
 * abort passes through untouched so the caller can recognise it.
 */
export async function readExact(
  source: ByteSource,
  offset: number,
  length: number,
  options: ReadExactOptions = {},
): Promise<Uint8Array> {
  const { what, tensor, signal } = options
  const prefix = what === undefined ? '' : `${what}: `
  const fail = (code: 'ERR_MODEL_FILE_READ' | 'ERR_MODEL_FILE_TRUNCATED', msg: string, cause?: unknown) => {
    const opts: { tensor?: string; cause?: unknown } = cause === undefined ? {} : { cause }
    if (tensor !== undefined) opts.tensor = tensor
    return new ModelFileError(code, source.name, `${prefix}${msg}`, opts)
  }
  signal?.throwIfAborted()
  let bytes: unknown
  try {
    bytes = await source.read(offset, length, signal)
  } catch (cause) {
    if (signal?.aborted) throw cause
    const msg = cause instanceof Error ? cause.message : String(cause)
    throw fail('ERR_MODEL_FILE_READ', `reading ${length} bytes at offset ${offset} failed: ${msg}`, cause)
  }
  if (!(bytes instanceof Uint8Array)) {
    throw fail('ERR_MODEL_FILE_READ', `read at offset ${offset} returned no byte array`)
  }
  if (bytes.byteLength < length) {
    throw fail(
      'ERR_MODEL_FILE_TRUNCATED',
      `short read: got ${bytes.byteLength} of ${length} bytes at offset ${offset}`,
    )
  }
  if (bytes.byteLength > length) {
    const msg = `read returned ${bytes.byteLength} bytes, more than the ${length} requested at offset ${offset}`
    throw fail('ERR_MODEL_FILE_READ', msg)
  }
  return bytes
}
