import { type FileHandle, open } from 'node:fs/promises'
import type { ByteSource } from '@butterfly/core'

/** A ByteSource over a local file; reads exactly the requested range. */
export class FileSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly handle: FileHandle,
  ) {}

  static async open(path: string): Promise<FileSource> {
    const handle = await open(path, 'r')
    try {
      const { size } = await handle.stat()
      return new FileSource(path, size, handle)
    } catch (err) {
      await handle.close()
      throw err
    }
  }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    signal?.throwIfAborted()
    const out = new Uint8Array(length)
    let done = 0
    while (done < length) {
      const { bytesRead } = await this.handle.read(out, done, length - done, offset + done)
      if (bytesRead === 0) break
      done += bytesRead
    }
    return done === length ? out : out.subarray(0, done)
  }

  close(): Promise<void> {
    return this.handle.close()
  }
}
