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

export type ModelDownloadErrorCode =
  /** `--model hf:…` or `--model https://…` is malformed, or --hf-endpoint is not an allowed URL. */
  | 'ERR_MODEL_SPEC'
  /** The hub refused the credentials (401/403): set HF_TOKEN, or the token lacks access. */
  | 'ERR_DOWNLOAD_AUTH'
  /** The repository, revision or file does not exist (404). */
  | 'ERR_DOWNLOAD_NOT_FOUND'
  /** Any other HTTP status that is not success, after retries where retrying makes sense. */
  | 'ERR_DOWNLOAD_HTTP'
  /** The connection failed or dropped, after retries. */
  | 'ERR_DOWNLOAD_NETWORK'
  /** No response headers, or no body bytes, within the time allowed. */
  | 'ERR_DOWNLOAD_TIMEOUT'
  /** Too many redirects, or a redirect to a scheme or host that is not allowed. */
  | 'ERR_DOWNLOAD_REDIRECT'
  /** The body is larger than announced or allowed, or shorter than the listing says. */
  | 'ERR_DOWNLOAD_SIZE'
  /** The hub answered something that is not what its API promises (listing, headers). */
  | 'ERR_DOWNLOAD_RESPONSE'
  /** Another live process is downloading the same file into the same cache. */
  | 'ERR_DOWNLOAD_BUSY'
  /** HF_HUB_OFFLINE is set and the cache does not hold the model. */
  | 'ERR_DOWNLOAD_OFFLINE'

/**
 * Fetching a model from a hub or URL failed. `url` is the request that failed (never carrying
 * the token), `status` its HTTP status when there was one. `retryable` marks failures a later
 * attempt may cure (network, 5xx, 429, timeouts); the downloader retries those itself.
 */
export class ModelDownloadError extends ButterflyError {
  override readonly name = 'ModelDownloadError'
  declare readonly code: ModelDownloadErrorCode
  readonly url: string | undefined
  readonly status: number | undefined
  readonly retryable: boolean

  constructor(
    code: ModelDownloadErrorCode,
    message: string,
    options: { url?: string; status?: number; retryable?: boolean; cause?: unknown } = {},
  ) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause })
    this.url = options.url
    this.status = options.status
    this.retryable = options.retryable ?? false
  }
}

export type TurnErrorCode =
  /** The TURN server refused the credentials (401): expired, or minted from another secret. */
  | 'ERR_TURN_AUTH'
  /** The TURN server did not answer, or answered with an error other than 401. */
  | 'ERR_TURN_UNREACHABLE'

/** A TURN server that relay-only ICE depends on cannot allocate a relay for this peer. */
export class TurnError extends ButterflyError {
  override readonly name = 'TurnError'
  declare readonly code: TurnErrorCode
  constructor(code: TurnErrorCode, message: string) {
    super(code, message)
  }
}
