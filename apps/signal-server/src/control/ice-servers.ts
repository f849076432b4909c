import type { IceServer } from '@butterfly/core'
import { ServerConfigError } from '../errors.js'

/** Validates ICE servers (from --ice-servers JSON or ServerInit). */
export function parseIceServers(value: unknown): IceServer[] {
  if (!Array.isArray(value)) throw new ServerConfigError('ICE servers must be a JSON array')
  if (value.length > 32) throw new ServerConfigError('at most 32 ICE servers')
  return value.map((s: unknown, i) => {
    const where = `ICE server #${i}`
    if (typeof s !== 'object' || s === null || Array.isArray(s))
      throw new ServerConfigError(`${where} must be an object`)
    const { urls, username, credential } = s as Record<string, unknown>
    const list = typeof urls === 'string' ? [urls] : urls
    if (
      !Array.isArray(list) ||
      list.length === 0 ||
      !list.every((u) => typeof u === 'string' && /^(stuns?|turns?):/.test(u))
    ) {
      throw new ServerConfigError(`${where}: urls must be stun:, stuns:, turn: or turns: URLs`)
    }
    for (const [field, v] of [
      ['username', username],
      ['credential', credential],
    ] as const) {
      if (v !== undefined && typeof v !== 'string')
        throw new ServerConfigError(`${where}: ${field} must be a string`)
    }
    return {
      urls: typeof urls === 'string' ? urls : [...(list as string[])],
      ...(typeof username === 'string' ? { username } : {}),
      ...(typeof credential === 'string' ? { credential } : {}),
    }
  })
}
