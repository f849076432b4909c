import { ButterflyError } from '@butterfly/core'

/** The server was configured with something it cannot run: duplicate meshes, bad options. */
export class ServerConfigError extends ButterflyError {
  override readonly name = 'ServerConfigError'
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SERVER_CONFIG', message, options)
  }
}
