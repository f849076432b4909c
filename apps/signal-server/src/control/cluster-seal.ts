import { createHmac, timingSafeEqual } from 'node:crypto'
import { ClusterError, ServerConfigError } from '../errors.js'

/** Bounds on `--cluster-secret`: long enough to resist guessing, short enough to be a flag. */
export const CLUSTER_SECRET_BYTES = { min: 16, max: 512 } as const

const MAC_CHARS = 43 // base64url of a SHA-256 HMAC

/**
 * Seals what a server writes to Redis or sends the others with an HMAC under the secret all the
 * cluster's servers share. Parsing refuses malformed values; the seal refuses well-formed ones
 * that no server wrote, so whoever can write to Redis without the secret can delete and replay
 * but not forge. Each value is bound to its place (its key, and field): a sealed record moved to
 * another key, server or peer does not open. Without a secret values pass as they are.
 */
export class ClusterSeal {
  private readonly secret: Buffer | undefined

  constructor(secret: string | undefined) {
    if (secret !== undefined) {
      const bytes = Buffer.byteLength(secret)
      if (bytes < CLUSTER_SECRET_BYTES.min || bytes > CLUSTER_SECRET_BYTES.max) {
        throw new ServerConfigError(
          `the cluster secret must be ${CLUSTER_SECRET_BYTES.min} to ${CLUSTER_SECRET_BYTES.max} bytes`,
        )
      }
    }
    this.secret = secret === undefined ? undefined : Buffer.from(secret)
  }

  get sealed(): boolean {
    return this.secret !== undefined
  }

  mac(place: string, value: string): string {
    if (this.secret === undefined) return ''
    return createHmac('sha256', this.secret).update(place).update('\n').update(value).digest('base64url')
  }

  /** `value` as stored at `place`: `MAC.value`. */
  seal(place: string, value: string): string {
    return this.secret === undefined ? value : `${this.mac(place, value)}.${value}`
  }

  /** The value sealed at `place`; ERR_CLUSTER_FORGED when the seal is missing or wrong. */
  open(place: string, raw: string): string {
    if (this.secret === undefined) return raw
    const value = raw.slice(MAC_CHARS + 1)
    if (raw.charAt(MAC_CHARS) !== '.' || !this.check(place, value, raw.slice(0, MAC_CHARS))) {
      throw new ClusterError('ERR_CLUSTER_FORGED', `a value at ${place.slice(0, 160)} has no valid seal`)
    }
    return value
  }

  /** Whether `mac` is this secret's MAC of `value` at `place` (constant time). */
  check(place: string, value: string, mac: unknown): boolean {
    if (this.secret === undefined) return true
    if (typeof mac !== 'string' || mac.length !== MAC_CHARS) return false
    return timingSafeEqual(Buffer.from(mac), Buffer.from(this.mac(place, value)))
  }
}
