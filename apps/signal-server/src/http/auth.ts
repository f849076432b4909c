import type { FastifyReply, FastifyRequest } from 'fastify'
import { secretEquals } from '../control/secret-equals.js'
import { ApiError } from './http-errors.js'

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
 * token configured every request passes. A refused request is answered 401 here, and the reply
 * is returned so Fastify ends the request instead of running the route.
 */
export function requireBearer(token: string | undefined) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (bearerMatches(request.headers.authorization, token)) return undefined
    const err = new ApiError(401, 'invalid_api_key', 'missing or invalid bearer token')
    return reply.code(401).send(err.body())
  }
}
