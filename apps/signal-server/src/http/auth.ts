import type { FastifyReply, FastifyRequest } from 'fastify'
import { secretEquals } from '../control/secret-equals.js'
import { sendError } from './http-errors.js'

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
