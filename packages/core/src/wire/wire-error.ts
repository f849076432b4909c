import type { WireError } from '../errors.js'
import { payloadError, utf8Bytes } from './body.js'

// Errors on the wire: what a StepError's {name, code, message} may hold, and how anything thrown
// becomes one that passes.

export const MAX_ERROR_NAME_LENGTH = 64
export const MAX_ERROR_MESSAGE_BYTES = 1024
const ERROR_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/
const ERROR_CODE = /^[A-Za-z0-9_]{1,64}$/

/** Throws ERR_WIRE_PAYLOAD unless `error` is a valid StepError.error. */
export function checkError(error: unknown): void {
  if (typeof error !== 'object' || error === null) throw payloadError('StepError.error must be an object')
  const { name, code, message } = error as Record<string, unknown>
  if (!(typeof name === 'string' && ERROR_NAME.test(name))) {
    throw payloadError(`StepError.error.name must be an identifier of at most ${MAX_ERROR_NAME_LENGTH} chars`)
  }
  if (!(typeof code === 'string' && ERROR_CODE.test(code))) {
    throw payloadError('StepError.error.code must be 1..64 chars of [A-Za-z0-9_]')
  }
  // UTF-8 never takes fewer bytes than UTF-16 code units, so a long string fails without encoding.
  if (typeof message !== 'string' || message.length > MAX_ERROR_MESSAGE_BYTES) {
    throw payloadError(
      `StepError.error.message must be a string of at most ${MAX_ERROR_MESSAGE_BYTES} UTF-8 bytes`,
    )
  }
  const bytes = utf8Bytes(message).length
  if (bytes > MAX_ERROR_MESSAGE_BYTES) {
    throw payloadError(`StepError.error.message is ${bytes} UTF-8 bytes, over ${MAX_ERROR_MESSAGE_BYTES}`)
  }
}

/**
 * Turns anything thrown into a WireError that passes validation: names and codes that do not
 * fit are replaced, messages are cut to MAX_ERROR_MESSAGE_BYTES on a character boundary.
 */
export function toWireError(err: unknown): WireError {
  const e = (typeof err === 'object' && err !== null ? err : {}) as Record<string, unknown>
  const rawName = typeof e.name === 'string' ? e.name : 'Error'
  const name = ERROR_NAME.test(rawName) ? rawName : 'Error'
  let code = typeof e.code === 'string' && ERROR_CODE.test(e.code) ? e.code : 'ERR_INTERNAL'
  if (name === 'AbortError' && code === 'ERR_INTERNAL') code = 'ERR_ABORTED'
  const rawMessage = typeof e.message === 'string' ? e.message : typeof err === 'object' ? '' : String(err)
  return { name, code, message: truncateUtf8(rawMessage, MAX_ERROR_MESSAGE_BYTES) }
}

function truncateUtf8(s: string, maxBytes: number): string {
  const bytes = utf8Bytes(s)
  if (bytes.length <= maxBytes) return s
  const ellipsis = '…'
  let end = maxBytes - 3
  // Back up over continuation bytes (10xxxxxx) so no code point is split.
  while (end > 0 && ((bytes[end] as number) & 0xc0) === 0x80) end--
  return new TextDecoder().decode(bytes.subarray(0, end)) + ellipsis
}
