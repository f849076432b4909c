import type { IceServer } from '@butterfly/core'
import { CliUsageError } from '@butterfly/node-platform'
import { Option } from 'commander'
import { iceArg, intArg } from './cli-args.js'
import {
  DEFAULT_TURN_TTL_SECONDS,
  MAX_TURN_TTL_SECONDS,
  MIN_TURN_TTL_SECONDS,
  parseTurnConfig,
  type TurnConfig,
} from './control/turn-credentials.js'

/** The parsed ICE and TURN flags of `butterfly-server` (ServerCliOptions has them too). */
export interface IceCliOptions {
  iceServers: IceServer[]
  turnSecret?: string
  turnUrl?: string[]
  turnTtl: number
  iceTransportPolicy: 'all' | 'relay'
}

/** Each --turn-url may be a comma list; repeated flags add up. */
function turnUrlArg(value: string, previous: string[] | undefined): string[] {
  const urls = value.split(',').map((u) => u.trim())
  const bad = urls.find((u) => !/^turns?:[^\s,]{1,250}$/.test(u))
  if (bad !== undefined)
    throw new CliUsageError(`--turn-url must be turn:HOST:PORT or turns:HOST:PORT, got "${bad}"`)
  return [...(previous ?? []), ...urls]
}

function secretArg(value: string): string {
  if (value.length === 0 || value.length > 256)
    throw new CliUsageError('--turn-secret must be 1-256 characters')
  return value
}

/** Kept apart from cli.ts, which would otherwise outgrow its file. */
export function iceOptions(): Record<keyof IceCliOptions, Option> {
  return {
    iceServers: new Option(
      '--ice-servers <json>',
      'STUN/TURN servers handed to peers, as a JSON array of RTCIceServer',
    )
      .env('BUTTERFLY_ICE_SERVERS')
      .argParser(iceArg)
      .default([], '[]'),
    turnSecret: new Option(
      '--turn-secret <secret>',
      "coturn's static-auth-secret: each peer gets TURN credentials minted from it at join (prefer the env variable)",
    )
      .env('BUTTERFLY_TURN_SECRET')
      .argParser(secretArg),
    turnUrl: new Option(
      '--turn-url <url>',
      'TURN server the minted credentials are for (turn:HOST:PORT; repeatable)',
    )
      .env('BUTTERFLY_TURN_URL')
      .argParser(turnUrlArg),
    turnTtl: new Option('--turn-ttl <seconds>', 'how long each minted TURN credential stays valid')
      .env('BUTTERFLY_TURN_TTL')
      .argParser(intArg('--turn-ttl', MIN_TURN_TTL_SECONDS, MAX_TURN_TTL_SECONDS))
      .default(DEFAULT_TURN_TTL_SECONDS),
    iceTransportPolicy: new Option(
      '--ice-transport-policy <policy>',
      'handed to peers: relay sends every connection through TURN',
    )
      .env('BUTTERFLY_ICE_TRANSPORT_POLICY')
      .choices(['all', 'relay'])
      .default('all'),
  }
}

/** The flags together: a secret without a URL (or the reverse), or relay with no TURN, is a usage error. */
export function turnFromCli(opts: IceCliOptions): TurnConfig | undefined {
  if (opts.turnSecret !== undefined && opts.turnUrl === undefined)
    throw new CliUsageError('--turn-secret needs --turn-url')
  if (opts.turnUrl !== undefined && opts.turnSecret === undefined)
    throw new CliUsageError('--turn-url needs --turn-secret (or BUTTERFLY_TURN_SECRET)')
  let turn: TurnConfig | undefined
  try {
    turn = parseTurnConfig({
      secret: opts.turnSecret,
      urls: opts.turnUrl,
      ttlSeconds: opts.turnSecret === undefined ? undefined : opts.turnTtl,
    })
  } catch (err) {
    throw new CliUsageError(`--turn-url: ${(err as Error).message}`)
  }
  const iceTurn = opts.iceServers.some((s) => [s.urls].flat().some((u) => u.startsWith('turn')))
  if (opts.iceTransportPolicy === 'relay' && turn === undefined && !iceTurn) {
    throw new CliUsageError('--ice-transport-policy relay needs a TURN server (--turn-secret and --turn-url)')
  }
  return turn
}
