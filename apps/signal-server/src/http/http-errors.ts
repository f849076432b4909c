import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'

/** The OpenAI error shape, used by every route so clients parse one format. */
export interface HttpErrorBody {
  readonly error: { readonly message: string; readonly type: string; readonly code: string }
}

const TYPE_BY_STATUS: Readonly<Record<number, string>> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  416: 'invalid_request_error',
  429: 'rate_limit_error',
  503: 'service_unavailable_error',
}

export function httpErrorBody(status: number, code: string, message: string, type?: string): HttpErrorBody {
  return { error: { message, type: type ?? TYPE_BY_STATUS[status] ?? 'server_error', code } }
}

export function sendError(
  reply: FastifyReply,
  status: number,
  code: string,
  message: string,
  type?: string,
): FastifyReply {
  return reply
    .code(status)
    .type('application/json; charset=utf-8')
    .send(httpErrorBody(status, code, message, type))
}

/** Constant-time string comparison; hashing first hides the length too. */
export function secretEquals(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

/**
 * A Fastify onRequest/preHandler hook that demands `Authorization: Bearer <token>`; with no
 * token configured every request passes.
 */
export function requireBearer(token: string | undefined) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (token === undefined) return
    const header = request.headers.authorization ?? ''
    const given = /^Bearer (.+)$/i.exec(header)?.[1]
    if (given === undefined || !secretEquals(given, token)) {
      await sendError(reply, 401, 'invalid_api_key', 'missing or invalid bearer token')
    }
  }
}
