import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { sendError } from './http-errors.js'

/**
 * Constant-time string comparison for every secret the server checks (API bearer tokens, mesh
 * tokens): both sides are hashed to equal-length SHA-256 digests first, which hides the length too.
 */
export function secretEquals(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

/** The token of an `Authorization: Bearer <token>` header; undefined for anything else. */
export function bearerToken(header: string | undefined): string | undefined {
  return /^Bearer (.+)$/i.exec(header ?? '')?.[1]
}

/** Whether a request's Authorization header carries `token`; with none configured, always. */
export function bearerMatches(header: string | undefined, token: string | undefined): boolean {
  if (token === undefined) return true
  const given = bearerToken(header)
  return given !== undefined && secretEquals(given, token)
}

/**
 * A Fastify onRequest/preHandler hook that demands `Authorization: Bearer <token>`; with no
 * token configured every request passes.
 */
export function requireBearer(token: string | undefined) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!bearerMatches(request.headers.authorization, token)) {
      await sendError(reply, 401, 'invalid_api_key', 'missing or invalid bearer token')
    }
  }
}
