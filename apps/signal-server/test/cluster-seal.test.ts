import { createHmac } from 'node:crypto'
import { describe, expect, test } from 'vitest'
import { ClusterSeal } from '../src/control/cluster-seal.js'

// The seal of values in Redis and of messages between servers: HMAC-SHA256 under the shared
// secret, over the value's place and the value.

const SECRET = 'sixteen bytes at least'
const seal = new ClusterSeal(SECRET)

function forged(fn: () => unknown): void {
  expect(fn).toThrow(expect.objectContaining({ name: 'ClusterError', code: 'ERR_CLUSTER_FORGED' }))
}

describe('ClusterSeal', () => {
  test('a sealed value opens at its place; the MAC is HMAC-SHA256 over "place\\nvalue"', () => {
    const raw = seal.seal('k:members:s1#p1', '{"id":"p1"}')
    const mac = createHmac('sha256', SECRET).update('k:members:s1#p1\n{"id":"p1"}').digest('base64url')
    expect(raw).toBe(`${mac}.{"id":"p1"}`)
    expect(seal.open('k:members:s1#p1', raw)).toBe('{"id":"p1"}')
  })

  test.each([
    ['an unsealed value', (raw: string) => raw.slice(44)],
    ['an edited value', (raw: string) => raw.replace('p1"}', 'p2"}')],
    ['an edited MAC', (raw: string) => `${raw[0] === 'A' ? 'B' : 'A'}${raw.slice(1)}`],
    ['a MAC without its dot', (raw: string) => raw.replace('.', '')],
    ['an empty string', () => ''],
  ])('%s is forged', (_, edit) => {
    const raw = seal.seal('k:members:s1#p1', '{"id":"p1"}')
    forged(() => seal.open('k:members:s1#p1', edit(raw)))
  })

  test("a value moved to another place, or another secret's, is forged", () => {
    const raw = seal.seal('k:members:s1#p1', '{"id":"p1"}')
    forged(() => seal.open('k:members:s2#p1', raw))
    forged(() => seal.open('k:members:s1#p2', raw))
    forged(() => new ClusterSeal('another secret of length').open('k:members:s1#p1', raw))
  })

  test('check compares MACs of any shape without throwing', () => {
    const mac = seal.mac('event', '{"a":1}')
    expect(seal.check('event', '{"a":1}', mac)).toBe(true)
    for (const bad of [undefined, 7, '', 'x'.repeat(43), `${mac}x`, { mac }]) {
      expect(seal.check('event', '{"a":1}', bad)).toBe(false)
    }
  })

  test('without a secret values pass as they are; a secret out of 16-512 bytes is ERR_SERVER_CONFIG', () => {
    const open = new ClusterSeal(undefined)
    expect(open.sealed).toBe(false)
    expect(open.seal('p', 'v')).toBe('v')
    expect(open.open('p', 'anything')).toBe('anything')
    expect(open.check('p', 'v', undefined)).toBe(true)
    for (const bad of ['short', 'x'.repeat(513)]) {
      expect(() => new ClusterSeal(bad)).toThrow(expect.objectContaining({ code: 'ERR_SERVER_CONFIG' }))
    }
  })
})
