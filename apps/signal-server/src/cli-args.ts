import type { IceServer } from '@butterfly/core'
import { CliUsageError } from '@butterfly/node-platform'
import { parseIceServers } from './control/ice-servers.js'

/** The value parsers of the `butterfly-server` flags: each bad value is a CliUsageError naming the flag. */
export const MESH_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

export function intArg(flag: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value)
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new CliUsageError(`${flag} must be an integer from ${min} to ${max}, got "${value}"`)
    }
    return n
  }
}

export function fractionArg(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value)
    if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) {
      throw new CliUsageError(`${flag} must be a number from 0 to 1, got "${value}"`)
    }
    return n
  }
}

export function meshArg(value: string): string {
  if (!MESH_NAME.test(value)) {
    throw new CliUsageError(
      `--mesh must be 1-64 letters, digits, '.', '_' or '-' (not starting with '.', '_' or '-'), got "${value}"`,
    )
  }
  return value
}

export function tokenArg(flag: string): (value: string) => string {
  return (value) => {
    if (value.length === 0 || value.length > 256) throw new CliUsageError(`${flag} must be 1-256 characters`)
    return value
  }
}

export function iceArg(value: string): IceServer[] {
  let json: unknown
  try {
    json = JSON.parse(value)
  } catch {
    throw new CliUsageError(`--ice-servers must be JSON, e.g. '[{"urls":"stun:stun.l.google.com:19302"}]'`)
  }
  try {
    return parseIceServers(json)
  } catch (err) {
    throw new CliUsageError(`--ice-servers: ${(err as Error).message}`)
  }
}

/** A number no less than `min` and at most `max` (a factor such as --slow-claim-factor). */
export function numberArg(flag: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value)
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new CliUsageError(`${flag} must be a number from ${min} to ${max}, got "${value}"`)
    }
    return n
  }
}

/** A file path: non-empty, at most 4096 characters, no NUL. */
export function pathArg(flag: string): (value: string) => string {
  return (value) => {
    if (value.length === 0 || value.length > 4096 || value.includes('\0')) {
      throw new CliUsageError(`${flag} must be a file path`)
    }
    return value
  }
}
