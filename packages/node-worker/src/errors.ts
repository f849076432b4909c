import { ButterflyError } from '@butterfly/core'

/** Bad command-line arguments. */
export class CliUsageError extends ButterflyError {
  override readonly name = 'CliUsageError'
  constructor(message: string) {
    super('ERR_CLI_USAGE', message)
  }
}

/** The model directory or one of its files does not exist. */
export class ModelNotFoundError extends ButterflyError {
  override readonly name = 'ModelNotFoundError'
  constructor(message: string) {
    super('ERR_MODEL_NOT_FOUND', message)
  }
}

/** The requested device (cuda, webgpu) is not available in this onnxruntime-node. */
export class DeviceUnavailableError extends ButterflyError {
  override readonly name = 'DeviceUnavailableError'
  constructor(message: string) {
    super('ERR_DEVICE_UNAVAILABLE', message)
  }
}

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
