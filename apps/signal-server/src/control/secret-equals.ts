import { createHash, timingSafeEqual } from 'node:crypto'

/**
 * Constant-time string comparison for every secret the server checks (API bearer tokens, mesh
 * tokens): both sides are hashed to equal-length SHA-256 digests first, which hides the length too.
 * It lives in control/, the lowest room, so the socket.io join and the HTTP routes share it.
 */
export function secretEquals(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}
