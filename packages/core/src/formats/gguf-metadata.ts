import { ModelConfigError, TokenizerError } from '../errors.js'
import type { GgufFile, GgufValue } from './gguf-reader.js'

/** Typed access to GGUF metadata; every error names the key and what it holds. */
export class MetadataReader {
  constructor(private readonly file: GgufFile) {}

  has(key: string): boolean {
    return this.file.metadata.has(key)
  }

  /** Tokenizer keys fail as tokenizer errors, the rest as config errors. */
  private fail(key: string, msg: string): ModelConfigError | TokenizerError {
    const text = `${this.file.source.name}: GGUF metadata ${key} ${msg}`
    return key.startsWith('tokenizer.') ? new TokenizerError(text) : new ModelConfigError(text)
  }

  private get(key: string): GgufValue {
    const v = this.file.metadata.get(key)
    if (v === undefined) throw this.fail(key, 'is missing')
    return v
  }

  string(key: string): string {
    const v = this.get(key)
    if (typeof v !== 'string') throw this.fail(key, `must be a string, got ${describe(v)}`)
    return v
  }

  optionalString(key: string): string | undefined {
    return this.has(key) ? this.string(key) : undefined
  }

  number(key: string): number {
    const v = this.get(key)
    if (typeof v !== 'number') throw this.fail(key, `must be a number, got ${describe(v)}`)
    return v
  }

  optionalNumber(key: string): number | undefined {
    return this.has(key) ? this.number(key) : undefined
  }

  int(key: string): number {
    const v = this.number(key)
    if (!Number.isSafeInteger(v) || v < 0) throw this.fail(key, `must be a non-negative integer, got ${v}`)
    return v
  }

  optionalBool(key: string): boolean | undefined {
    if (!this.has(key)) return undefined
    const v = this.get(key)
    if (typeof v !== 'boolean') throw this.fail(key, `must be a boolean, got ${describe(v)}`)
    return v
  }

  optionalInt(key: string): number | undefined {
    return this.has(key) ? this.int(key) : undefined
  }

  /** An array whose elements are all of `kind` (integers of any width count as 'int32'). */
  array(key: string, kind: 'string' | 'float32' | 'int32'): ReadonlyArray<number | string> {
    const v = this.get(key)
    if (typeof v !== 'object' || !('values' in v))
      throw this.fail(key, `must be an array, got ${describe(v)}`)
    const ok =
      kind === 'string'
        ? v.type === 'string'
        : kind === 'float32'
          ? v.type === 'float32' || v.type === 'float64'
          : /^u?int(8|16|32)$/.test(v.type)
    if (!ok) throw this.fail(key, `must be an array of ${kind}, got an array of ${v.type}`)
    return v.values as ReadonlyArray<number | string>
  }
}

function describe(v: GgufValue): string {
  if (typeof v === 'object' && 'values' in v) return `an array of ${v.values.length} ${v.type}`
  return `${typeof v} ${JSON.stringify(typeof v === 'bigint' ? String(v) : v)}`
}
