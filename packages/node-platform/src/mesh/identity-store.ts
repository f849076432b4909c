import { randomBytes } from 'node:crypto'
import { chmod, link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import {
  fromBase64url,
  generateIdentity,
  IdentityError,
  identityFromSecret,
  type PeerIdentity,
  SECRET_KEY_BYTES,
  toBase64url,
} from '@butterfly/core'

/**
 * The worker's long-lived identity on disk, as JSON readable only by its owner:
 *
 *   { "version": 1, "type": "ed25519", "secretKey": "<base64url>", "publicKey": "...", "peerId": "..." }
 *
 * Only secretKey is needed; publicKey and peerId are there for people, and are checked so a
 * hand-edited file fails loudly rather than joining under an unexpected id.
 */

export const IDENTITY_FILE_VERSION = 1

/** `$BUTTERFLY_IDENTITY`, else `$XDG_CONFIG_HOME/butterfly/identity.json` (`~/.config` by default). */
export function defaultIdentityPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BUTTERFLY_IDENTITY) return env.BUTTERFLY_IDENTITY
  const config = env.XDG_CONFIG_HOME || join(homedir(), '.config')
  return join(config, 'butterfly', 'identity.json')
}

/**
 * Loads the identity at `path`, creating it (mode 0600) on first use. Concurrent first runs
 * agree on one identity: the file appears atomically and only once.
 */
export async function loadOrCreateIdentity(path: string = defaultIdentityPath()): Promise<PeerIdentity> {
  const existing = await readIdentityFile(path)
  if (existing !== undefined) return existing
  const identity = generateIdentity()
  await writeIdentityFile(path, identity)
  // Another process may have won the race; everyone uses the file that is there.
  return (await readIdentityFile(path)) ?? identity
}

/** The identity stored at `path`, or undefined when there is no file. */
export async function readIdentityFile(path: string): Promise<PeerIdentity | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new IdentityError(
      'ERR_IDENTITY_FILE',
      `cannot read identity file ${path}: ${(err as Error).message}`,
      {
        cause: err,
      },
    )
  }
  return parseIdentityFile(path, text)
}

export function parseIdentityFile(path: string, text: string): PeerIdentity {
  const corrupt = (why: string) =>
    new IdentityError(
      'ERR_IDENTITY_FILE',
      `identity file ${path} is corrupt (${why}); move it away to create a new identity, which gives this worker a new peer id`,
    )
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw corrupt('not JSON')
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw corrupt('not a JSON object')
  const f = json as Record<string, unknown>
  if (f.version !== IDENTITY_FILE_VERSION) throw corrupt(`unsupported version ${JSON.stringify(f.version)}`)
  if (f.type !== 'ed25519') throw corrupt(`unsupported key type ${JSON.stringify(f.type)}`)
  const secret = typeof f.secretKey === 'string' ? fromBase64url(f.secretKey) : undefined
  if (secret === undefined || secret.length !== SECRET_KEY_BYTES) {
    throw corrupt(`secretKey must be base64url of ${SECRET_KEY_BYTES} bytes`)
  }
  const identity = identityFromSecret(secret)
  if (f.publicKey !== undefined && f.publicKey !== toBase64url(identity.publicKey)) {
    throw corrupt('publicKey does not match secretKey')
  }
  if (f.peerId !== undefined && f.peerId !== identity.peerId) throw corrupt('peerId does not match secretKey')
  return identity
}

export function formatIdentityFile(identity: PeerIdentity): string {
  const file = {
    version: IDENTITY_FILE_VERSION,
    type: 'ed25519',
    secretKey: toBase64url(identity.secretKey),
    publicKey: toBase64url(identity.publicKey),
    peerId: identity.peerId,
  }
  return `${JSON.stringify(file, null, 2)}\n`
}

/**
 * Writes a new identity file without ever exposing a partial one: the JSON goes to a private
 * temporary file that is then hard-linked into place, which fails if `path` already exists.
 */
async function writeIdentityFile(path: string, identity: PeerIdentity): Promise<void> {
  const fail = (err: unknown) =>
    new IdentityError('ERR_IDENTITY_FILE', `cannot create identity file ${path}: ${(err as Error).message}`, {
      cause: err,
    })
  const dir = dirname(path)
  const tmp = join(dir, `.identity-${process.pid}-${randomBytes(6).toString('hex')}.tmp`)
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const text = formatIdentityFile(identity)
    await writeFile(tmp, text, { mode: 0o600, flag: 'wx' })
    // writeFile's mode is filtered by the umask; the key must not be group- or world-readable.
    await chmod(tmp, 0o600)
    await link(tmp, path).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST') return
      if (err.code !== 'EPERM' && err.code !== 'ENOTSUP' && err.code !== 'ENOSYS') throw err
      // No hard links on this filesystem: an exclusive create still lets only one writer win.
      await writeFile(path, text, { mode: 0o600, flag: 'wx' }).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e
      })
    })
  } catch (err) {
    throw fail(err)
  } finally {
    await unlink(tmp).catch(() => undefined)
  }
}
