import { createHmac } from 'node:crypto'
import { describe, expect, test } from 'vitest'
import {
  createIceFor,
  DEFAULT_TURN_TTL_SECONDS,
  mintTurnCredential,
  parseIceTransportPolicy,
  parseTurnConfig,
} from '../src/control/turn-credentials.js'

describe('mintTurnCredential', () => {
  test('matches a vector computed outside Node (Python hmac: sha1, base64)', () => {
    expect(mintTurnCredential('north-wind', 'peer-a', 1_700_000_000)).toEqual({
      username: '1700000000:peer-a',
      credential: 'RDCXyXfPYyw8y1g0J+ezx7C0URw=',
    })
  })

  test('is the TURN REST API scheme: HMAC-SHA1 of "expiry:peer" under the secret', () => {
    const { username, credential } = mintTurnCredential('s', 'p'.repeat(64), 42)
    expect(username).toBe(`42:${'p'.repeat(64)}`)
    expect(credential).toBe(createHmac('sha1', 's').update(username).digest('base64'))
    expect(mintTurnCredential('t', 'p'.repeat(64), 42).credential).not.toBe(credential)
  })
})

describe('createIceFor', () => {
  const turn = { secret: 'shh', urls: ['turn:127.0.0.1:3478'], ttlSeconds: 600 }

  test('appends a TURN server minted for the peer, expiring ttl seconds from now', () => {
    let nowMs = 1_000_000_500
    const iceFor = createIceFor({
      iceServers: [{ urls: 'stun:127.0.0.1:3478' }],
      turn,
      iceTransportPolicy: 'relay',
      now: () => nowMs,
    })
    const first = iceFor('peer-b')
    expect(first.iceTransportPolicy).toBe('relay')
    expect(first.iceServers[0]).toEqual({ urls: 'stun:127.0.0.1:3478' })
    const minted = first.iceServers[1]
    expect(minted?.urls).toEqual(['turn:127.0.0.1:3478'])
    expect(minted?.username).toBe(`${1_000_000 + 600}:peer-b`)
    expect(minted?.credential).toBe(createHmac('sha1', 'shh').update(`${1_000_600}:peer-b`).digest('base64'))
    // A rejoin later gets a fresh credential, not the old one.
    nowMs += 5_000
    expect(iceFor('peer-b').iceServers[1]?.username).toBe(`${1_000_605}:peer-b`)
    expect(JSON.stringify(first)).not.toContain('shh')
  })

  test('without TURN it hands out the static servers and refuses relay-only', () => {
    expect(createIceFor({ iceServers: [], turn: undefined, iceTransportPolicy: 'all' })('x')).toEqual({
      iceServers: [],
      iceTransportPolicy: 'all',
    })
    expect(() => createIceFor({ iceServers: [], turn: undefined, iceTransportPolicy: 'relay' })).toThrow(
      expect.objectContaining({ code: 'ERR_SERVER_CONFIG' }),
    )
    const staticTurn = [{ urls: 'turn:127.0.0.1:3478', username: 'u', credential: 'c' }]
    expect(
      createIceFor({ iceServers: staticTurn, turn: undefined, iceTransportPolicy: 'relay' })('x').iceServers,
    ).toEqual(staticTurn)
  })
})

describe('parseTurnConfig', () => {
  test('defaults the ttl and accepts turn: and turns: URLs', () => {
    expect(parseTurnConfig({})).toBeUndefined()
    expect(
      parseTurnConfig({ secret: 's', urls: ['turn:h:3478', 'turns:[::1]:5349', 'turn:h?transport=tcp'] }),
    ).toEqual({
      secret: 's',
      urls: ['turn:h:3478', 'turns:[::1]:5349', 'turn:h?transport=tcp'],
      ttlSeconds: DEFAULT_TURN_TTL_SECONDS,
    })
  })

  const bad: Array<[string, Parameters<typeof parseTurnConfig>[0]]> = [
    ['a secret without URLs', { secret: 's' }],
    ['a secret with an empty URL list', { secret: 's', urls: [] }],
    ['URLs without a secret', { urls: ['turn:h:1'] }],
    ['an empty secret', { secret: '', urls: ['turn:h:1'] }],
    ['a secret over 256 characters', { secret: 'x'.repeat(257), urls: ['turn:h:1'] }],
    ['a non-string secret', { secret: 7, urls: ['turn:h:1'] }],
    ['URLs that are not an array', { secret: 's', urls: 'turn:h:1' }],
    ['a stun: URL', { secret: 's', urls: ['stun:h:1'] }],
    ['an http URL', { secret: 's', urls: ['http://h'] }],
    ['a URL with a space', { secret: 's', urls: ['turn:h 1'] }],
    ['a URL with a bad port', { secret: 's', urls: ['turn:h:123456'] }],
    ['a non-string URL', { secret: 's', urls: [3478] }],
    ['17 URLs', { secret: 's', urls: Array.from({ length: 17 }, () => 'turn:h:1') }],
    ['a ttl under a minute', { secret: 's', urls: ['turn:h:1'], ttlSeconds: 59 }],
    ['a ttl past a week', { secret: 's', urls: ['turn:h:1'], ttlSeconds: 604_801 }],
    ['a fractional ttl', { secret: 's', urls: ['turn:h:1'], ttlSeconds: 90.5 }],
    ['a string ttl', { secret: 's', urls: ['turn:h:1'], ttlSeconds: '600' }],
    ['a ttl with no TURN at all', { ttlSeconds: 600 }],
  ]
  test.each(bad)('%s is ERR_SERVER_CONFIG', (_, value) => {
    expect(() => parseTurnConfig(value)).toThrow(
      expect.objectContaining({ name: 'ServerConfigError', code: 'ERR_SERVER_CONFIG' }),
    )
  })

  test('the ICE transport policy is all or relay', () => {
    expect(parseIceTransportPolicy(undefined)).toBe('all')
    expect(parseIceTransportPolicy('relay')).toBe('relay')
    for (const v of ['RELAY', 'none', 1, null]) {
      expect(() => parseIceTransportPolicy(v)).toThrow(expect.objectContaining({ code: 'ERR_SERVER_CONFIG' }))
    }
  })
})
