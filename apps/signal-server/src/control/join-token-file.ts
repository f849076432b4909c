import { parsePeerId } from '@butterfly/core'
import { JoinTokenFileError } from '../errors.js'

// The token file's format, and the parser of one record, which also reads the records another
// server of a cluster shares (see token-share.ts).

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

const ID_RE = /^jt_[0-9a-f]{16}$/
const HASH_RE = /^[0-9a-f]{64}$/
const LABEL_RE = /^[\x20-\x7e]*$/
export const FILE_VERSION = 1

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
    try {
      const r = parseJoinTokenRecord(t)
      if (ids.has(r.id)) throw new TypeError(`id ${r.id} appears twice`)
      if (hashes.has(r.sha256)) throw new TypeError('sha256 appears twice')
      ids.add(r.id)
      hashes.add(r.sha256)
      return r
    } catch (err) {
      throw fail(`${at}${err instanceof NotAnObject ? '' : '.'}${(err as Error).message}`)
    }
  })
}

class NotAnObject extends TypeError {}

/** One token record (from the file, or another server of a cluster); throws TypeError naming the field. */
export function parseJoinTokenRecord(t: unknown): JoinTokenRecord {
  if (!isRecord(t)) throw new NotAnObject(' must be an object')
  try {
    if (typeof t.id !== 'string' || !ID_RE.test(t.id)) throw new TypeError('id must be jt_ and 16 hex digits')
    if (typeof t.sha256 !== 'string' || !HASH_RE.test(t.sha256))
      throw new TypeError('sha256 must be 64 lowercase hex digits')
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
    if (err instanceof TypeError) throw err
    throw new TypeError((err as Error).message)
  }
}
