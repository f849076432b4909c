import { CliUsageError } from '@butterfly/node-platform'
import bytes from 'bytes'

/** Parsers for numeric flags; each rejects with the flag's name and the accepted range. */
export function intArg(flag: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value)
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new CliUsageError(`${flag} must be an integer from ${min} to ${max}, got "${value}"`)
    }
    return n
  }
}

export function floatArg(
  flag: string,
  min: number,
  max: number,
  minExclusive = false,
): (value: string) => number {
  return (value) => {
    const n = Number(value)
    const low = minExclusive ? n > min : n >= min
    if (value.trim() === '' || !Number.isFinite(n) || !low || n > max) {
      const range = `${minExclusive ? '(' : '['}${min}, ${max}]`
      throw new CliUsageError(`${flag} must be a number in ${range}, got "${value}"`)
    }
    return n
  }
}

/** Parses sizes like "4GB", "512MiB" or a plain byte count, of at least `min` bytes. */
export function sizeArg(flag: string, min: number, example: string): (value: string) => number {
  return (value) => {
    const n = bytes.parse(value.replace(/iB$/i, 'B'))
    if (n === null || !Number.isFinite(n) || n < min) {
      throw new CliUsageError(`${flag} must be a size such as ${example}, got "${value}"`)
    }
    return n
  }
}
