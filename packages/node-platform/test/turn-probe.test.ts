import { createHmac } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { type Coturn, startCoturn } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { probeTurn, probeTurnServers } from '../src/mesh/turn-probe.js'

// The probe against a real coturn on loopback (TURN REST API secret), and a silent UDP socket.
const SECRET = 'probe-secret'
let coturn: Coturn

const mint = (secret: string, expires: number, peer = 'probe-peer') => {
  const username = `${expires}:${peer}`
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') }
}
const later = () => Math.floor(Date.now() / 1000) + 600

beforeAll(async () => {
  coturn = await startCoturn(SECRET)
}, 30_000)
afterAll(() => coturn?.stop())

describe('probeTurn', () => {
  test('valid credentials allocate (and free) a relay', async () => {
    const before = coturn.allocations()
    const { username, credential } = mint(SECRET, later())
    await expect(probeTurn(coturn.url, username, credential)).resolves.toBeUndefined()
    expect(coturn.allocations()).toBe(before + 1)
  })

  test.each([
    ['another secret', () => mint('not-it', later())],
    ['an expired credential', () => mint(SECRET, Math.floor(Date.now() / 1000) - 60)],
    ['a tampered password', () => ({ ...mint(SECRET, later()), credential: 'AAAA' })],
  ])('%s is TurnError ERR_TURN_AUTH naming the refusal', async (_, creds) => {
    const { username, credential } = creds()
    await expect(probeTurnServers([{ urls: [coturn.url], username, credential }])).rejects.toMatchObject({
      name: 'TurnError',
      code: 'ERR_TURN_AUTH',
      message: expect.stringContaining('refused the credentials'),
    })
  })

  test('a server that never answers is ERR_TURN_UNREACHABLE after the timeout', async () => {
    const silent = createSocket('udp4')
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve))
    try {
      const url = `turn:127.0.0.1:${silent.address().port}`
      await expect(probeTurn(url, 'u', 'p', 200)).rejects.toMatchObject({ code: 'ERR_TURN_UNREACHABLE' })
    } finally {
      silent.close()
    }
  })

  test('turns: and TCP URLs and servers without credentials are left to ICE', async () => {
    await expect(
      probeTurnServers([
        { urls: ['turns:127.0.0.1:1', 'turn:127.0.0.1:1?transport=tcp'], username: 'u', credential: 'p' },
        { urls: 'turn:127.0.0.1:1' },
      ]),
    ).resolves.toBeUndefined()
  })
})
