import { createHash } from 'node:crypto'
import { ANONYMOUS_CLIENT } from '../gateway/admission.js'
import { bearerToken } from '../http/auth.js'

/**
 * The key a request queues under for fair admission: a digest of its bearer token (the token
 * itself is never kept or logged), else its source address, else ANONYMOUS_CLIENT. With one
 * shared --api-token (`sharedToken`) every client sends the same token, which then tells no
 * client from another: such requests are keyed by address instead.
 */
export function clientKeyOf(
  authorization: string | undefined,
  address: string | undefined,
  sharedToken?: string,
): string {
  const token = bearerToken(authorization)
  if (token !== undefined && sharedToken === undefined) {
    return `key:${createHash('sha256').update(token).digest('hex').slice(0, 32)}`
  }
  return address === undefined || address === '' ? ANONYMOUS_CLIENT : `addr:${address}`
}
