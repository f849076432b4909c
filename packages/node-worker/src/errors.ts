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
