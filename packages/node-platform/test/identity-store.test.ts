import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { IdentityError, identityFromSecret, toBase64url } from '@butterfly/core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  defaultIdentityPath,
  formatIdentityFile,
  loadOrCreateIdentity,
  readIdentityFile,
} from '../src/mesh/identity-store.js'

let dir: string
let n = 0
const fresh = () => join(dir, `case-${n++}`, 'identity.json')

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bf-identity-'))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

async function identityError(p: Promise<unknown>): Promise<IdentityError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(IdentityError)
  expect((err as IdentityError).code).toBe('ERR_IDENTITY_FILE')
  return err as IdentityError
}

describe('identity store', () => {
  test('creates a private identity file once, then loads the same identity', async () => {
    const path = fresh()
    const created = await loadOrCreateIdentity(path)
    const info = await stat(path)
    if (process.platform !== 'win32') expect(info.mode & 0o777).toBe(0o600)
    const json = JSON.parse(await readFile(path, 'utf8'))
    expect(json).toEqual({
      version: 1,
      type: 'ed25519',
      secretKey: toBase64url(created.secretKey),
      publicKey: toBase64url(created.publicKey),
      peerId: created.peerId,
    })
    const loaded = await loadOrCreateIdentity(path)
    expect(loaded.peerId).toBe(created.peerId)
    expect(Array.from(loaded.secretKey)).toEqual(Array.from(created.secretKey))
    expect(await readIdentityFile(fresh())).toBeUndefined()
  })

  test('concurrent first runs agree on one identity and leave no temporary files', async () => {
    const path = fresh()
    const ids = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateIdentity(path)))
    expect(new Set(ids.map((i) => i.peerId)).size).toBe(1)
    expect((await loadOrCreateIdentity(path)).peerId).toBe(ids[0]?.peerId)
    expect(await readdir(join(path, '..'))).toEqual(['identity.json'])
  })

  test('reads a file written by hand with only the secret key', async () => {
    const path = fresh()
    const secret = Uint8Array.from({ length: 32 }, (_, i) => i)
    await mkdir(join(path, '..'), { recursive: true })
    await writeFile(path, JSON.stringify({ version: 1, type: 'ed25519', secretKey: toBase64url(secret) }))
    expect((await loadOrCreateIdentity(path)).peerId).toBe(identityFromSecret(secret).peerId)
  })

  const good = JSON.parse(formatIdentityFile(identityFromSecret(new Uint8Array(32).fill(7))))
  const other = identityFromSecret(new Uint8Array(32).fill(8))
  const corrupt: Array<[string, string]> = [
    ['an empty file', ''],
    ['truncated JSON', formatIdentityFile(identityFromSecret(new Uint8Array(32))).slice(0, 40)],
    ['a JSON array', '[1,2]'],
    ['JSON null', 'null'],
    ['no version', JSON.stringify({ ...good, version: undefined })],
    ['version 2', JSON.stringify({ ...good, version: 2 })],
    ['another key type', JSON.stringify({ ...good, type: 'rsa' })],
    ['no secret key', JSON.stringify({ ...good, secretKey: undefined })],
    ['a 31-byte secret key', JSON.stringify({ ...good, secretKey: toBase64url(new Uint8Array(31)) })],
    ['a hex secret key', JSON.stringify({ ...good, secretKey: '07'.repeat(32) })],
    ['a numeric secret key', JSON.stringify({ ...good, secretKey: 7 })],
    [
      'a public key of another identity',
      JSON.stringify({ ...good, publicKey: toBase64url(other.publicKey) }),
    ],
    ['a peer id of another identity', JSON.stringify({ ...good, peerId: other.peerId })],
  ]
  test.each(corrupt)('%s is ERR_IDENTITY_FILE naming the file, and is left alone', async (_, text) => {
    const path = fresh()
    await mkdir(join(path, '..'), { recursive: true })
    await writeFile(path, text)
    const err = await identityError(loadOrCreateIdentity(path))
    expect(err.message).toContain(path)
    expect(err.message).toMatch(/corrupt/)
    expect(await readFile(path, 'utf8')).toBe(text)
  })

  test('a path that cannot hold a file is ERR_IDENTITY_FILE', async () => {
    const asDir = fresh()
    await mkdir(asDir, { recursive: true })
    expect((await identityError(loadOrCreateIdentity(asDir))).message).toContain(asDir)
    const blocker = join(dir, `blocker-${n++}`)
    await writeFile(blocker, 'x')
    await identityError(loadOrCreateIdentity(join(blocker, 'identity.json')))
  })

  test('the default path follows BUTTERFLY_IDENTITY, then XDG_CONFIG_HOME, then ~/.config', () => {
    expect(defaultIdentityPath({ BUTTERFLY_IDENTITY: '/x/id.json', XDG_CONFIG_HOME: '/cfg' })).toBe(
      '/x/id.json',
    )
    expect(defaultIdentityPath({ XDG_CONFIG_HOME: '/cfg' })).toBe(join('/cfg', 'butterfly', 'identity.json'))
    expect(defaultIdentityPath({})).toBe(join(homedir(), '.config', 'butterfly', 'identity.json'))
  })
})
