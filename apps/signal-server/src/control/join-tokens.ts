import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { parsePeerId } from '@butterfly/core'
import { JoinRefusedError, JoinTokenFileError } from '../errors.js'
import {
  checkLabel,
  FILE_VERSION,
  JOIN_TOKEN_LIMITS,
  type JoinTokenRecord,
  parseJoinTokenFile,
} from './join-token-file.js'

export {
  checkLabel,
  JOIN_TOKEN_LIMITS,
  type JoinTokenRecord,
  parseJoinTokenFile,
  parseJoinTokenRecord,
} from './join-token-file.js'

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

function sha256(token: string): string {
  return createHash('sha256').update(token).digest('hex')
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
  private changes = 0

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

  /** Counts the changes made to the records (issue, bind, revoke, merge): unchanged, unchanged. */
  get version(): number {
    return this.changes
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

  /** Every record as stored (copies): what a cluster shares with its other servers. */
  shared(): JoinTokenRecord[] {
    return this.records.map((r) => ({ ...r }))
  }

  /**
   * Takes in records another server holds: tokens it issued, and what happened to them there
   * (bound, revoked). Only ever moves a token forward: a new id is added, an unbound one takes the
   * binding, a live one the revocation; a record whose id or hash clashes with another is refused.
   * Returns the tokens this revoked here, and how many records were refused.
   */
  merge(incoming: readonly JoinTokenRecord[]): {
    revoked: JoinTokenRecord[]
    refused: number
    error: unknown
  } {
    const revoked: JoinTokenRecord[] = []
    let refused = 0
    let changed = false
    for (const t of incoming) {
      const r = this.byHash.get(t.sha256)
      if (r === undefined) {
        const clash = this.records.some((x) => x.id === t.id)
        if (clash || this.records.length >= JOIN_TOKEN_LIMITS.tokens) {
          refused++
          continue
        }
        const record = { ...t }
        this.records.push(record)
        this.byHash.set(record.sha256, record)
        if (record.revokedAt !== null) revoked.push(record)
        changed = true
        continue
      }
      if (r.id !== t.id || r.mesh !== t.mesh) {
        refused++
        continue
      }
      if (r.boundPeerId === null && t.boundPeerId !== null) {
        r.boundPeerId = t.boundPeerId
        changed = true
      }
      if (r.revokedAt === null && t.revokedAt !== null) {
        r.revokedAt = t.revokedAt
        revoked.push(r)
        changed = true
      }
    }
    // A failed write keeps the merge in memory (the next change writes it all) and is returned.
    let error: unknown
    if (changed) {
      try {
        this.persist(() => {})
      } catch (err) {
        error = err
      }
    }
    return { revoked, refused, error }
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
    this.changes++
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
