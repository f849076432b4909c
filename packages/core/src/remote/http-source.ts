import { ModelFileError } from '../errors.js'
import type { ByteSource } from '../weights/byte-source.js'

/**
 * A ByteSource over HTTP Range requests, so a worker downloads only the byte ranges of its
 * own tensors. Each read is one `Range: bytes=a-b` request; a server that ignores ranges
 * (200 instead of 206) or returns the wrong length is an error, not silently trusted.
 */
export class HttpSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly url: string,
    private readonly headers: Record<string, string>,
  ) {}

  static async open(
    url: string,
    headers: Record<string, string> = {},
    signal?: AbortSignal,
  ): Promise<HttpSource> {
    const res = await fetch(url, { method: 'HEAD', headers, ...(signal ? { signal } : {}) })
    if (!res.ok) throw new ModelFileError('ERR_MODEL_FILE_READ', url, `HEAD answered ${res.status}`)
    const size = Number(res.headers.get('content-length'))
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new ModelFileError('ERR_MODEL_FILE_READ', url, 'no usable Content-Length')
    }
    return new HttpSource(url, size, url, headers)
  }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (length === 0) return new Uint8Array(0)
    const res = await fetch(this.url, {
      headers: { ...this.headers, range: `bytes=${offset}-${offset + length - 1}` },
      ...(signal ? { signal } : {}),
    })
    if (res.status !== 206) {
      await res.body?.cancel()
      throw new ModelFileError(
        'ERR_MODEL_FILE_READ',
        this.name,
        `range request answered ${res.status}, not 206`,
      )
    }
    const bytes = new Uint8Array(await res.arrayBuffer())
    if (bytes.length > length) {
      throw new ModelFileError(
        'ERR_MODEL_FILE_READ',
        this.name,
        `asked for ${length} bytes, got ${bytes.length}`,
      )
    }
    return bytes
  }
}
