import { createHmac } from 'node:crypto'
import type { IceServer, IceTransportPolicy } from '@butterfly/core'
import { ServerConfigError } from '../errors.js'

/** TURN servers sharing a secret with this server (coturn's `use-auth-secret`). */
export interface TurnConfig {
  readonly secret: string
  readonly urls: readonly string[]
  /** Seconds each minted credential stays valid. */
  readonly ttlSeconds: number
}

/** What a peer is told in its join ack about ICE. */
export interface PeerIce {
  readonly iceServers: readonly IceServer[]
  readonly iceTransportPolicy: IceTransportPolicy
}

/** ICE servers and policy for a given peer id: fresh TURN credentials on each call. */
export type IceFor = (peerId: string) => PeerIce

// A day, as the TURN REST API draft suggests: a peer whose credential expires must rejoin
// before its next connection, so it should outlive ordinary sessions; a week at most.
export const DEFAULT_TURN_TTL_SECONDS = 86_400
export const MIN_TURN_TTL_SECONDS = 60
export const MAX_TURN_TTL_SECONDS = 7 * 86_400
const TURN_URL = /^turns?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(\?transport=(udp|tcp))?$/

/**
 * The TURN REST API credential coturn checks with `--use-auth-secret`: the username is
 * `expiry:peerId` (expiry in Unix seconds) and the password is base64(HMAC-SHA1(secret, username)),
 * so coturn needs no user database and no long-lived password reaches a browser.
 */
export function mintTurnCredential(
  secret: string,
  peerId: string,
  expiresAtSeconds: number,
): { username: string; credential: string } {
  const username = `${expiresAtSeconds}:${peerId}`
  const credential = createHmac('sha1', secret).update(username).digest('base64')
  return { username, credential }
}

/** Validates a TurnConfig (from the flags or ServerInit); every failure is a ServerConfigError. */
export function parseTurnConfig(value: {
  secret?: unknown
  urls?: unknown
  ttlSeconds?: unknown
}): TurnConfig | undefined {
  const { secret, urls, ttlSeconds } = value
  const list = urls === undefined ? [] : urls
  if (secret === undefined && (!Array.isArray(list) || list.length === 0)) {
    if (ttlSeconds !== undefined) throw new ServerConfigError('a TURN ttl needs a TURN secret and URL')
    return undefined
  }
  if (typeof secret !== 'string' || secret.length === 0 || secret.length > 256) {
    throw new ServerConfigError('TURN URLs need a TURN secret of 1-256 characters')
  }
  if (!Array.isArray(list) || list.length === 0)
    throw new ServerConfigError('a TURN secret needs at least one TURN URL')
  if (list.length > 16) throw new ServerConfigError('at most 16 TURN URLs')
  for (const u of list) {
    if (typeof u !== 'string' || u.length > 256 || !TURN_URL.test(u)) {
      throw new ServerConfigError(
        `TURN URL must be turn:HOST[:PORT] or turns:HOST[:PORT], got ${JSON.stringify(u)}`,
      )
    }
  }
  const ttl = ttlSeconds ?? DEFAULT_TURN_TTL_SECONDS
  if (
    typeof ttl !== 'number' ||
    !Number.isSafeInteger(ttl) ||
    ttl < MIN_TURN_TTL_SECONDS ||
    ttl > MAX_TURN_TTL_SECONDS
  ) {
    throw new ServerConfigError(
      `TURN ttl must be an integer from ${MIN_TURN_TTL_SECONDS} to ${MAX_TURN_TTL_SECONDS} seconds, got ${String(ttl)}`,
    )
  }
  return { secret, urls: [...(list as string[])], ttlSeconds: ttl }
}

/** Validates an ICE transport policy (from the flag or ServerInit). */
export function parseIceTransportPolicy(value: unknown): IceTransportPolicy {
  if (value === undefined) return 'all'
  if (value !== 'all' && value !== 'relay') {
    throw new ServerConfigError(`iceTransportPolicy must be 'all' or 'relay', got ${JSON.stringify(value)}`)
  }
  return value
}

/**
 * What each peer gets: the static ICE servers, then one TURN server with a credential minted for
 * that peer id now. Relay-only without any TURN server could never connect, so it is refused.
 */
export function createIceFor(options: {
  iceServers: readonly IceServer[]
  turn: TurnConfig | undefined
  iceTransportPolicy: IceTransportPolicy
  now?: () => number
}): IceFor {
  const { iceServers, turn, iceTransportPolicy } = options
  const now = options.now ?? Date.now
  const hasTurn =
    turn !== undefined ||
    iceServers.some((s) => (typeof s.urls === 'string' ? [s.urls] : s.urls).some((u) => u.startsWith('turn')))
  if (iceTransportPolicy === 'relay' && !hasTurn) {
    throw new ServerConfigError(
      "iceTransportPolicy 'relay' needs a TURN server (TURN secret and URL, or ICE servers)",
    )
  }
  return (peerId) => {
    if (turn === undefined) return { iceServers, iceTransportPolicy }
    const expires = Math.floor(now() / 1000) + turn.ttlSeconds
    const minted: IceServer = { urls: [...turn.urls], ...mintTurnCredential(turn.secret, peerId, expires) }
    return { iceServers: [...iceServers, minted], iceTransportPolicy }
  }
}
