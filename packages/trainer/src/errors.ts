import { ButterflyError } from '@butterfly/core'

/** Bad command-line arguments (same code as butterfly-worker's usage errors). */
export class TrainUsageError extends ButterflyError {
  override readonly name = 'TrainUsageError'
  constructor(message: string) {
    super('ERR_CLI_USAGE', message)
  }
}

export type CorpusErrorCode = 'ERR_CORPUS_NOT_FOUND' | 'ERR_CORPUS_READ' | 'ERR_CORPUS_TOO_SMALL'

/** The training text is missing, unreadable, or too short for the requested context. Names the file. */
export class CorpusError extends ButterflyError {
  override readonly name = 'CorpusError'
  readonly file: string
  constructor(code: CorpusErrorCode, file: string, message: string, options?: { cause?: unknown }) {
    super(code, `${file}: ${message}`, options)
    this.file = file
  }
}

export type TrainErrorCode =
  | 'ERR_TRAIN_CONFIG'
  | 'ERR_TRAIN_DIVERGED'
  | 'ERR_TRAIN_WORKER'
  | 'ERR_TRAIN_OUTPUT'

/** Training could not start (bad hyperparameters), blew up (non-finite loss) or lost a worker thread. */
export class TrainError extends ButterflyError {
  override readonly name = 'TrainError'
  constructor(code: TrainErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
  }
}
