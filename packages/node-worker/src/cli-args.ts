import { CliUsageError } from '@butterfly/node-platform'

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
