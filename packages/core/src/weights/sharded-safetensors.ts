import { ModelFileError } from '../errors.js'
import type { ByteSource } from './byte-source.js'
import { SafetensorsReader, type TensorExpectation, type TensorInfo } from './safetensors.js'
import { SAFETENSORS_FILE, type SafetensorsIndex } from './safetensors-index.js'
import type { RawTensor } from './tensor.js'

/** Opens one weights file of the model by name (a FileSource, an HttpSource, ...). */
export type ShardOpener = (file: string, signal?: AbortSignal) => Promise<ByteSource>

/**
 * A model's weights: one `model.safetensors`, or the shards `model.safetensors.index.json`
 * names. A shard's header is read the first time one of its tensors is asked for, so a stage
 * whose layers live in two of twenty shards opens two.
 */
export class ShardedSafetensors {
  private readonly readers = new Map<string, Promise<SafetensorsReader>>()
  private readonly sources: ByteSource[] = []

  private constructor(
    private readonly opener: ShardOpener,
    /** Undefined for a single model.safetensors. */
    readonly index: SafetensorsIndex | undefined,
    /** Where the index came from, for errors. */
    private readonly indexName: string,
  ) {}

  static single(opener: ShardOpener): ShardedSafetensors {
    return new ShardedSafetensors(opener, undefined, SAFETENSORS_FILE)
  }

  static sharded(index: SafetensorsIndex, opener: ShardOpener, indexName: string): ShardedSafetensors {
    return new ShardedSafetensors(opener, index, indexName)
  }

  /** The weights files, in index order. */
  get files(): readonly string[] {
    return this.index === undefined ? [SAFETENSORS_FILE] : this.index.shards
  }

  /** The file that holds `tensor`; a name the index lacks is ERR_MODEL_TENSOR_MISSING. */
  fileOf(tensor: string): string {
    if (this.index === undefined) return SAFETENSORS_FILE
    const file = this.index.weightMap.get(tensor)
    if (file === undefined) {
      throw new ModelFileError('ERR_MODEL_TENSOR_MISSING', this.indexName, 'tensor not in weight_map', {
        tensor,
      })
    }
    return file
  }

  /** The header of `file`, read once. A failed open is forgotten so a later call can retry. */
  reader(file: string, signal?: AbortSignal): Promise<SafetensorsReader> {
    let reader = this.readers.get(file)
    if (reader === undefined) {
      reader = this.openReader(file, signal)
      this.readers.set(file, reader)
      reader.catch(() => this.readers.delete(file))
    }
    return reader
  }

  /** Where `tensor` lies in its file, reading that file's header if needed. */
  async info(tensor: string, signal?: AbortSignal): Promise<TensorInfo & { file: string }> {
    const file = this.fileOf(tensor)
    const reader = await this.reader(file, signal)
    this.checkHeld(reader, file, tensor)
    return { ...reader.info(tensor), file }
  }

  /** Range-reads one tensor from its shard after checking dtype and shape. */
  async read(tensor: string, expect: TensorExpectation = {}, signal?: AbortSignal): Promise<RawTensor> {
    const file = this.fileOf(tensor)
    const reader = await this.reader(file, signal)
    this.checkHeld(reader, file, tensor)
    return reader.read(tensor, expect, signal)
  }

  /**
   * Reads every shard's header and checks that each tensor the index names is in the shard it
   * names, so a lying index fails at load rather than halfway through building a stage.
   */
  async verify(signal?: AbortSignal): Promise<void> {
    for (const file of this.files) await this.reader(file, signal)
    if (this.index === undefined) return
    for (const [tensor, file] of this.index.weightMap) this.checkHeld(await this.reader(file), file, tensor)
  }

  /** Closes every source opened so far that can be closed. */
  async close(): Promise<void> {
    const sources = this.sources.splice(0)
    await Promise.all(sources.map((s) => (s as { close?: () => Promise<void> }).close?.()))
  }

  private async openReader(file: string, signal?: AbortSignal): Promise<SafetensorsReader> {
    const source = await this.opener(file, signal)
    this.sources.push(source)
    return SafetensorsReader.open(source, signal ? { signal } : {})
  }

  private checkHeld(reader: SafetensorsReader, file: string, tensor: string): void {
    if (this.index === undefined || reader.has(tensor)) return
    throw new ModelFileError(
      'ERR_MODEL_INDEX',
      this.indexName,
      `weight_map puts this tensor in ${file}, which does not hold it`,
      { tensor },
    )
  }
}
