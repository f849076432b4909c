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
