import { ButterflyError } from '@butterfly/core'

export type ImportErrorCode = 'ERR_IMPORT_UNSUPPORTED' | 'ERR_IMPORT_OUTPUT' | 'ERR_IMPORT_RANGE'

/**
 * `butterfly-worker import` cannot proceed: the requested output format is not in this build
 * (ERR_IMPORT_UNSUPPORTED), the output directory is taken (ERR_IMPORT_OUTPUT), or a weight does
 * not fit the requested dtype (ERR_IMPORT_RANGE: e.g. beyond float16's range).
 */
export class ImportError extends ButterflyError {
  override readonly name = 'ImportError'
  declare readonly code: ImportErrorCode
  constructor(code: ImportErrorCode, message: string) {
    super(code, message)
  }
}

/**
 * `butterfly-worker join` lost its server: the server went away, or dropped the worker (a missed
 * heartbeat, say). The worker belongs to no plan any more, so it exits (code 1) rather than
 * idling; a supervisor restarts it and it rejoins with the same identity.
 */
export class ServerLostError extends ButterflyError {
  override readonly name = 'ServerLostError'
  constructor(message: string) {
    super('ERR_SERVER_LOST', message)
  }
}
