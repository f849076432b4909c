import { ButterflyError, GatewayError, StageError } from '@butterfly/core'
import { describe, expect, test } from 'vitest'
import { clientKeyOf } from '../src/api/client-key.js'
import { secretEquals } from '../src/control/secret-equals.js'
import { bearerMatches } from '../src/http/auth.js'
import { ApiError, httpErrorBody, httpStatusOf, toApiError } from '../src/http/http-errors.js'

describe('error code → HTTP status', () => {
  const statuses: Array<[string, number]> = [
    ['ERR_QUEUE_FULL', 429],
    ['ERR_QUEUE_TIMEOUT', 429],
    ['ERR_MESH_NO_PLAN', 503],
    ['ERR_PLAN_NOT_READY', 503],
    ['ERR_NO_PLAN', 503],
    ['ERR_STEP_TIMEOUT', 503],
    ['ERR_ABORTED', 500],
    ['ERR_SOMETHING_NEW', 500],
  ]
  test.each(statuses)('%s is %i', (code, status) => {
    expect(httpStatusOf(code)).toBe(status)
  })

  const answers: Array<[string, unknown, number, string, string]> = [
    ['a full queue', new GatewayError('ERR_QUEUE_FULL', 'busy', 2), 429, 'queue_full', 'rate_limit_error'],
    [
      'a wait past the bound',
      new GatewayError('ERR_QUEUE_TIMEOUT', 'busy', 3),
      429,
      'queue_timeout',
      'rate_limit_error',
    ],
    ['no plan', new GatewayError('ERR_MESH_NO_PLAN', 'none'), 503, 'no_plan', 'server_error'],
    ['a loading plan', new GatewayError('ERR_PLAN_NOT_READY', 'wait'), 503, 'plan_not_ready', 'server_error'],
    ['a step timeout', new StageError('ERR_STEP_TIMEOUT', 'slow'), 503, 'ERR_STEP_TIMEOUT', 'server_error'],
    ['another Butterfly error', new ButterflyError('ERR_X', 'x'), 500, 'ERR_X', 'server_error'],
    ['an ApiError', new ApiError(404, 'model_not_found', 'no'), 404, 'model_not_found', 'not_found_error'],
    [
      'a bad request',
      new ApiError(400, 'invalid_request_error', 'bad'),
      400,
      'invalid_request_error',
      'invalid_request_error',
    ],
    ['anything else', new Error('secret detail'), 500, 'internal_error', 'server_error'],
  ]
  test.each(answers)('%s → %i %s', (_, err, status, code, type) => {
    const e = toApiError(err)
    expect(e.status).toBe(status)
    expect(e.body().error).toMatchObject({ code, type, param: null })
    if (!(err instanceof ButterflyError)) expect(e.message).not.toContain('secret detail')
  })

  test('a full queue and a queue timeout keep their Retry-After', () => {
    expect(toApiError(new GatewayError('ERR_QUEUE_FULL', 'busy', 7)).retryAfterSeconds).toBe(7)
    expect(toApiError(new GatewayError('ERR_QUEUE_TIMEOUT', 'busy', 9)).retryAfterSeconds).toBe(9)
  })

  test('bodies outside the OpenAI API carry no param', () => {
    expect(httpErrorBody(404, 'not_found', 'gone')).toEqual({
      error: { message: 'gone', type: 'not_found_error', code: 'not_found' },
    })
    expect(httpErrorBody(416, 'range', 'r').error.type).toBe('invalid_request_error')
  })
})

describe('constant-time secrets', () => {
  const pairs: Array<[string, string, string, boolean]> = [
    ['equal', 'tok-123', 'tok-123', true],
    ['different', 'tok-123', 'tok-124', false],
    ['a prefix', 'tok', 'tok-123', false],
    ['longer', 'tok-1234', 'tok-123', false],
    ['empty given', '', 'tok-123', false],
    ['case differs', 'TOK-123', 'tok-123', false],
    ['unicode', 'päss', 'päss', true],
  ]
  test.each(pairs)('%s', (_, given, expected, equal) => {
    expect(secretEquals(given, expected)).toBe(equal)
  })

  const headers: Array<[string | undefined, string | undefined, boolean]> = [
    ['Bearer s3cret', 's3cret', true],
    ['bearer s3cret', 's3cret', true],
    ['Bearer s3cre', 's3cret', false],
    ['Bearer ', 's3cret', false],
    ['s3cret', 's3cret', false],
    ['Basic s3cret', 's3cret', false],
    [undefined, 's3cret', false],
    [undefined, undefined, true],
    ['Bearer anything', undefined, true],
  ]
  test.each(headers)('Authorization %j against %j', (header, token, ok) => {
    expect(bearerMatches(header, token)).toBe(ok)
  })
})

describe('client keys for fair admission', () => {
  test('a bearer token becomes a digest that never contains the token', () => {
    const key = clientKeyOf('Bearer sk-very-secret', '10.0.0.1')
    expect(key).toMatch(/^key:[0-9a-f]{32}$/)
    expect(key).not.toContain('sk-very-secret')
    expect(clientKeyOf('Bearer sk-very-secret', '10.0.0.2')).toBe(key)
    expect(clientKeyOf('Bearer sk-other', '10.0.0.1')).not.toBe(key)
  })

  test.each([
    ['no bearer: the address', undefined, '10.0.0.1', undefined, 'addr:10.0.0.1'],
    ['a non-bearer header: the address', 'Basic abc', '10.0.0.1', undefined, 'addr:10.0.0.1'],
    [
      'one shared API token tells no client apart: the address',
      'Bearer shared',
      '10.0.0.1',
      'shared',
      'addr:10.0.0.1',
    ],
    ['nothing at all: anonymous', undefined, undefined, undefined, 'anonymous'],
  ])('%s', (_, header, address, shared, expected) => {
    expect(clientKeyOf(header, address, shared)).toBe(expected)
  })
})
