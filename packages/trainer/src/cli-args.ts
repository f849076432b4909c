import { TrainUsageError } from './errors.js'

/** Parsers for numeric flags; each rejects with the flag's name and the accepted range. */
export function intArg(flag: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value)
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new TrainUsageError(`${flag} must be an integer from ${min} to ${max}, got "${value}"`)
    }
    return n
  }
}

export function floatArg(flag: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value)
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new TrainUsageError(`${flag} must be a number in [${min}, ${max}], got "${value}"`)
    }
    return n
  }
}
