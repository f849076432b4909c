import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { parsePeerId } from '@butterfly/core'
import { JoinRefusedError, JoinTokenFileError } from '../errors.js'

/** Caps on what an operator (or a tampered file) can make the server hold. */
export const JOIN_TOKEN_LIMITS = {
  fileBytes: 4 * 1024 * 1024,
  tokens: 10_000,
  label: 128,
  /** Ten years. */
  maxExpiresInSeconds: 10 * 365 * 24 * 3600,
} as const

/** One issued token as the file keeps it: never the token itself, only its SHA-256. */
export interface JoinTokenRecord {
  readonly id: string
  readonly mesh: string
  readonly label: string | null
  /** Hex SHA-256 of the token. */
  readonly sha256: string
  /** ISO 8601. */
  readonly createdAt: string
  readonly expiresAt: string | null
  revokedAt: string | null
  /** The first identity that joined with it; nobody else may. */
  boundPeerId: string | null
}

/** What an issue returns: the token, shown this once. */
export interface IssuedJoinToken {
  readonly id: string
  readonly token: string
  readonly mesh: string
  readonly label: string | null
  readonly expiresAt: string | null
}

/** A token as listed: no secret, no hash. */
export interface JoinTokenView {
  readonly id: string
  readonly mesh: string
  readonly label: string | null
  readonly createdAt: string
  readonly expiresAt: string | null
  readonly revokedAt: string | null
  readonly boundPeerId: string | null
  readonly status: 'unused' | 'bound' | 'revoked' | 'expired'
}

export interface IssueRequest {
  readonly mesh: string
  readonly label?: string | undefined
  readonly expiresInSeconds?: number | undefined
}

const ID_RE = /^jt_[0-9a-f]{16}$/
const HASH_RE = /^[0-9a-f]{64}$/
const LABEL_RE = /^[\x20-\x7e]*$/
const FILE_VERSION = 1

function sha256(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** A printable-ASCII label of at most JOIN_TOKEN_LIMITS.label characters; `what` names it in errors. */
export function checkLabel(v: unknown, what: string): string | null {
  if (v === undefined || v === null) return null
  if (typeof v !== 'string' || v.length > JOIN_TOKEN_LIMITS.label || !LABEL_RE.test(v)) {
    throw new TypeError(`${what} must be printable ASCII of at most ${JOIN_TOKEN_LIMITS.label} characters`)
  }
  return v
}

function isoOrNull(v: unknown, what: string): string | null {
  if (v === null) return null
  if (typeof v !== 'string' || v.length > 40 || Number.isNaN(Date.parse(v))) {
    throw new TypeError(`${what} must be an ISO 8601 time or null`)
  }
  return v
}

/** Parses the token file's text; every fault is ERR_JOIN_TOKEN_FILE naming `source` and the field. */
export function parseJoinTokenFile(text: string, source: string): JoinTokenRecord[] {
  const fail = (why: string) => new JoinTokenFileError(`${source}: ${why}`)
  if (text.length > JOIN_TOKEN_LIMITS.fileBytes)
    throw fail(`larger than ${JOIN_TOKEN_LIMITS.fileBytes} bytes`)
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw fail(`not JSON (${(err as Error).message})`)
  }
  if (!isRecord(json)) throw fail('must be an object {"version": 1, "tokens": [...]}')
  if (json.version !== FILE_VERSION) throw fail(`version must be ${FILE_VERSION}`)
  const { tokens } = json
  if (!Array.isArray(tokens)) throw fail('tokens must be an array')
  if (tokens.length > JOIN_TOKEN_LIMITS.tokens) throw fail(`more than ${JOIN_TOKEN_LIMITS.tokens} tokens`)
  const ids = new Set<string>()
  const hashes = new Set<string>()
  return tokens.map((t, i) => {
    const at = `tokens[${i}]`
    if (!isRecord(t)) throw fail(`${at} must be an object`)
    try {
      if (typeof t.id !== 'string' || !ID_RE.test(t.id))
        throw new TypeError('id must be jt_ and 16 hex digits')
      if (typeof t.sha256 !== 'string' || !HASH_RE.test(t.sha256))
        throw new TypeError('sha256 must be 64 lowercase hex digits')
      if (ids.has(t.id)) throw new TypeError(`id ${t.id} appears twice`)
      if (hashes.has(t.sha256)) throw new TypeError('sha256 appears twice')
      ids.add(t.id)
      hashes.add(t.sha256)
      const createdAt = isoOrNull(t.createdAt, 'createdAt')
      if (createdAt === null) throw new TypeError('createdAt must be an ISO 8601 time')
      return {
        id: t.id,
        mesh: parsePeerId(t.mesh, 'mesh'),
        label: checkLabel(t.label, 'label'),
        sha256: t.sha256,
        createdAt,
        expiresAt: isoOrNull(t.expiresAt ?? null, 'expiresAt'),
        revokedAt: isoOrNull(t.revokedAt ?? null, 'revokedAt'),
        boundPeerId: t.boundPeerId == null ? null : parsePeerId(t.boundPeerId, 'boundPeerId'),
      }
    } catch (err) {
      throw fail(`${at}.${(err as Error).message}`)
    }
  })
}

/**
 * Per-peer join tokens: issued to one mesh, bound to the first identity that joins with one,
 * revocable, optionally expiring. With a path the set lives in that file, read at start and
 * rewritten atomically (a temporary file renamed over it) on every change; without one it lives
 * in memory only. A missing file is an empty set (the first change creates it).
 */
export class JoinTokenStore {
  private readonly records: JoinTokenRecord[]
  private readonly byHash = new Map<string, JoinTokenRecord>()

  private constructor(
    private readonly path: string | undefined,
    records: JoinTokenRecord[],
    private readonly now: () => number,
  ) {
    this.records = records
    for (const r of records) this.byHash.set(r.sha256, r)
  }

  /** Reads `path` (synchronously, at start-up); throws JoinTokenFileError. */
  static open(path: string | undefined, now: () => number = Date.now): JoinTokenStore {
    if (path === undefined) return new JoinTokenStore(undefined, [], now)
    let text: string
    try {
      const size = statSync(path).size
      if (size > JOIN_TOKEN_LIMITS.fileBytes) {
        throw new JoinTokenFileError(`${path}: larger than ${JOIN_TOKEN_LIMITS.fileBytes} bytes`)
      }
      text = readFileSync(path, 'utf8')
    } catch (err) {
      if (err instanceof JoinTokenFileError) throw err
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new JoinTokenStore(path, [], now)
      throw new JoinTokenFileError(`${path}: cannot read (${(err as Error).message})`, { cause: err })
    }
    return new JoinTokenStore(path, parseJoinTokenFile(text, path), now)
  }

  get size(): number {
    return this.records.length
  }

  issue(request: IssueRequest): IssuedJoinToken {
    if (this.records.length >= JOIN_TOKEN_LIMITS.tokens) {
      throw new JoinTokenFileError(`already ${JOIN_TOKEN_LIMITS.tokens} tokens: revoke and prune some first`)
    }
    const token = `bft_${randomBytes(32).toString('base64url')}`
    const now = this.now()
    const expires = request.expiresInSeconds
    const record: JoinTokenRecord = {
      id: `jt_${randomBytes(8).toString('hex')}`,
      mesh: parsePeerId(request.mesh, 'mesh'),
      label: checkLabel(request.label, 'label'),
      sha256: sha256(token),
      createdAt: new Date(now).toISOString(),
      expiresAt: expires === undefined ? null : new Date(now + expires * 1000).toISOString(),
      revokedAt: null,
      boundPeerId: null,
    }
    this.records.push(record)
    this.byHash.set(record.sha256, record)
    this.persist(() => {
      this.records.pop()
      this.byHash.delete(record.sha256)
    })
    return { id: record.id, token, mesh: record.mesh, label: record.label, expiresAt: record.expiresAt }
  }

  list(): JoinTokenView[] {
    return this.records.map((r) => this.view(r))
  }

  get(id: string): JoinTokenView | undefined {
    const r = this.records.find((x) => x.id === id)
    return r === undefined ? undefined : this.view(r)
  }

  /** Marks a token revoked (kept, so it stays refused); returns it as it was, or undefined. */
  revoke(id: string): JoinTokenView | undefined {
    const r = this.records.find((x) => x.id === id)
    if (r === undefined) return undefined
    const before = this.view(r)
    if (r.revokedAt === null) {
      r.revokedAt = new Date(this.now()).toISOString()
      this.persist(() => {
        r.revokedAt = null
      })
    }
    return before
  }

  /**
   * The id of the token `token` is, once it admits `peerId` to `mesh` (binding it on first use);
   * undefined when it is no token of this store. Throws JoinRefusedError for a revoked, expired,
   * other-mesh or other-identity token.
   */
  admit(token: string, mesh: string, peerId: string): string | undefined {
    const r = this.byHash.get(sha256(token))
    if (r === undefined) return undefined
    if (r.revokedAt !== null)
      throw new JoinRefusedError('ERR_JOIN_TOKEN_REVOKED', `join token ${r.id} was revoked`)
    if (r.mesh !== mesh)
      throw new JoinRefusedError('ERR_JOIN_TOKEN_MESH', `join token ${r.id} is not for mesh "${mesh}"`)
    if (this.expired(r))
      throw new JoinRefusedError('ERR_JOIN_TOKEN_EXPIRED', `join token ${r.id} has expired`)
    if (r.boundPeerId !== null && r.boundPeerId !== peerId) {
      throw new JoinRefusedError(
        'ERR_JOIN_TOKEN_BOUND',
        `join token ${r.id} belongs to another peer identity`,
      )
    }
    if (r.boundPeerId === null) {
      r.boundPeerId = peerId
      this.persist(() => {
        r.boundPeerId = null
      })
    }
    return r.id
  }

  private expired(r: JoinTokenRecord): boolean {
    return r.expiresAt !== null && Date.parse(r.expiresAt) <= this.now()
  }

  private view(r: JoinTokenRecord): JoinTokenView {
    const status =
      r.revokedAt !== null
        ? 'revoked'
        : this.expired(r)
          ? 'expired'
          : r.boundPeerId !== null
            ? 'bound'
            : 'unused'
    const { sha256: _secret, ...rest } = r
    return { ...rest, status }
  }

  /** Writes the file atomically; on failure undoes the change in memory and throws. */
  private persist(undo: () => void): void {
    if (this.path === undefined) return
    const text = `${JSON.stringify({ version: FILE_VERSION, tokens: this.records }, null, 2)}\n`
    const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
    try {
      writeFileSync(tmp, text, { mode: 0o600 })
      renameSync(tmp, this.path)
    } catch (err) {
      undo()
      throw new JoinTokenFileError(`${this.path}: cannot write (${(err as Error).message})`, { cause: err })
    }
  }
}
