import { ButterflyError } from '@butterfly/core'

/** Options of a test-only fault (FaultyStage, the faulty backend and worker) that make no sense. */
export class FaultOptionsError extends ButterflyError {
  override readonly name = 'FaultOptionsError'
  constructor(message: string) {
    super('ERR_FAULT_OPTIONS', message)
  }
}
