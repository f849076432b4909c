import { ButterflyError } from '@butterfly/core'
import type { FastifyReply } from 'fastify'

/** The OpenAI error shape, used by every route so clients parse one format. */
export interface HttpErrorBody {
  readonly error: {
    readonly message: string
    readonly type: string
    /** Present on the OpenAI API's errors (null when no parameter is at fault). */
    readonly param?: string | null
    readonly code: string
  }
}

/** An error answered over HTTP: its status and what the body says. */
export class ApiError extends ButterflyError {
  override readonly name = 'ApiError'
  constructor(
    readonly status: number,
    code: string,
    message: string,
    readonly param: string | null = null,
    readonly retryAfterSeconds?: number,
    /** Overrides the type the status implies (OpenAI's model_not_found is an invalid request). */
    readonly type?: string,
  ) {
    super(code, message)
  }

  /** The OpenAI API's body, `param` included. */
  body(): HttpErrorBody {
    return httpErrorBody(this.status, this.code, this.message, { param: this.param, type: this.type })
  }
}

const TYPE_BY_STATUS: Readonly<Record<number, string>> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  416: 'invalid_request_error',
  429: 'rate_limit_error',
}

/** The error type a status implies: 5xx are server_error, other 4xx invalid_request_error. */
function typeOf(status: number): string {
  return TYPE_BY_STATUS[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error')
}

/** The one builder of `{ error: { message, type, param?, code } }`. */
export function httpErrorBody(
  status: number,
  code: string,
  message: string,
  options: { readonly param?: string | null | undefined; readonly type?: string | undefined } = {},
): HttpErrorBody {
  const type = options.type ?? typeOf(status)
  return {
    error:
      options.param === undefined ? { message, type, code } : { message, type, param: options.param, code },
  }
}

/**
 * HTTP status and public code for Butterfly error codes; codes not listed are 500 under their
 * own code.
 */
const HTTP_BY_CODE: Readonly<Record<string, { readonly status: number; readonly code?: string }>> = {
  ERR_QUEUE_FULL: { status: 429, code: 'queue_full' },
  // The generation would wait, or has waited, past --max-queue-wait: back-pressure, not a fault.
  ERR_QUEUE_TIMEOUT: { status: 429, code: 'queue_timeout' },
  // The model's chat template cannot render these messages (or does not parse): a request error.
  ERR_CHAT_TEMPLATE: { status: 400 },
  ERR_MESH_NO_PLAN: { status: 503, code: 'no_plan' },
  ERR_PLAN_NOT_READY: { status: 503, code: 'plan_not_ready' },
  ERR_NO_PLAN: { status: 503 },
  ERR_STEP_TIMEOUT: { status: 503 },
  // The mesh could not produce a verified answer: its peers kept failing window checks.
  ERR_TOO_MANY_ROLLBACKS: { status: 503, code: 'unverifiable' },
}

/** The HTTP status of a Butterfly error code. */
export function httpStatusOf(code: string): number {
  return HTTP_BY_CODE[code]?.status ?? 500
}

/**
 * The one mapping from anything thrown to an HTTP answer: an ApiError as it is, a
 * ButterflyError by its code (httpStatusOf), anything else a 500 that says nothing inside.
 */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err
  if (err instanceof ButterflyError) {
    const retry = 'retryAfterSeconds' in err && typeof err.retryAfterSeconds === 'number'
    return new ApiError(
      httpStatusOf(err.code),
      HTTP_BY_CODE[err.code]?.code ?? err.code,
      err.message,
      null,
      retry ? (err.retryAfterSeconds as number) : undefined,
    )
  }
  return new ApiError(500, 'internal_error', 'the server failed to complete the request')
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
    .send(httpErrorBody(status, code, message, { type }))
}
