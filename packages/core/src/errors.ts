/**
 * Every error Butterfly raises on purpose. Each class has a stable `name` and `code`
 * so errors can cross the wire as `{name, code, message}` and be rebuilt on arrival.
 */

export interface WireError {
  name: string
  code: string
  message: string
}

export class ButterflyError extends Error {
  override readonly name: string = 'ButterflyError'
  readonly code: string

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }

  toJSON(): WireError {
    return { name: this.name, code: this.code, message: this.message }
  }
}

/** config.json is missing fields, has wrong types, or describes an unsupported model. */
export class ModelConfigError extends ButterflyError {
  override readonly name = 'ModelConfigError'
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_MODEL_CONFIG', message, options)
  }
}

export type ModelFileErrorCode =
  | 'ERR_MODEL_FILE_TRUNCATED'
  | 'ERR_MODEL_FILE_HEADER'
  | 'ERR_MODEL_FILE_DTYPE'
  | 'ERR_MODEL_FILE_SHAPE'
  | 'ERR_MODEL_TENSOR_MISSING'
  | 'ERR_MODEL_FILE_READ'
  | 'ERR_MODEL_FILE_HASH'
  /** model.safetensors.index.json is malformed, names a file outside the directory, or lies. */
  | 'ERR_MODEL_INDEX'
  | 'ERR_MODEL_FILE_VERSION'

/**
 * A weights file is corrupt or does not match the model config. Names the file and tensor.
 * ERR_MODEL_FILE_VERSION: a format version this build does not read (GGUF v1, llama2.c v2).
 */
export class ModelFileError extends ButterflyError {
  override readonly name = 'ModelFileError'
  readonly file: string
  readonly tensor: string | undefined

  constructor(
    code: ModelFileErrorCode,
    file: string,
    message: string,
    options?: { tensor?: string; cause?: unknown },
  ) {
    const where = options?.tensor === undefined ? file : `${file} (tensor ${options.tensor})`
    super(code, `${where}: ${message}`, options)
    this.file = file
    this.tensor = options?.tensor
  }
}

/** A tokenizer file is malformed or an id is out of range. */
export class TokenizerError extends ButterflyError {
  override readonly name = 'TokenizerError'
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_TOKENIZER', message, options)
  }
}

/**
 * A chat template is too large, fails to parse, or fails to render the messages (including a
 * template's own raise_exception). The gateway answers it as a 400: the template belongs to
 * the model, but what broke it is usually the request's messages.
 */
export class ChatTemplateError extends ButterflyError {
  override readonly name = 'ChatTemplateError'
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CHAT_TEMPLATE', message, options)
  }
}

/** A stage graph cannot be built for the requested layer range or options. */
export class GraphBuildError extends ButterflyError {
  override readonly name = 'GraphBuildError'
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_GRAPH_BUILD', message, options)
  }
}

/** Sampling parameters out of range (temperature < 0, top-p outside (0, 1], ...). */
export class SamplingError extends ButterflyError {
  override readonly name = 'SamplingError'
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SAMPLING_PARAMS', message, options)
  }
}

export type GenerationErrorCode =
  | 'ERR_CONTEXT_OVERFLOW'
  | 'ERR_STEP_ORDER'
  | 'ERR_ABORTED'
  /** A rollback (StageSession.truncate) to a length that is not a non-negative safe integer. */
  | 'ERR_TRUNCATE'

/** Generation state is inconsistent: context too long, step out of order, bad rollback, ... */
export class GenerationError extends ButterflyError {
  override readonly name = 'GenerationError'
  constructor(code: GenerationErrorCode, message: string) {
    super(code, message)
  }
}

/** Rebuilds an error that crossed the wire; unknown names become a plain ButterflyError. */
export function errorFromWire(wire: WireError): ButterflyError {
  const err = new ButterflyError(String(wire.code), String(wire.message))
  Object.defineProperty(err, 'name', { value: String(wire.name) })
  return err
}

export type TensorErrorCode = 'ERR_TENSOR_DTYPE' | 'ERR_TENSOR_SHAPE' | 'ERR_TENSOR_VALUE'

/** A tensor's dtype is unsupported, its shape or byte length is inconsistent, or a value is out of range. */
export class TensorError extends ButterflyError {
  override readonly name = 'TensorError'
  constructor(code: TensorErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
  }
}

/** A control-plane event (join, signal, plan, ...) is malformed or not allowed. */
export class ControlError extends ButterflyError {
  override readonly name = 'ControlError'
  constructor(
    code:
      | 'ERR_CONTROL_INPUT'
      | 'ERR_MESH_TOKEN'
      | 'ERR_MESH_UNKNOWN'
      | 'ERR_PEER_UNKNOWN'
      | 'ERR_NOT_JOINED'
      | 'ERR_JOIN_PROOF',
    message: string,
  ) {
    super(code, message)
  }
}

export type WireProtocolErrorCode =
  | 'ERR_WIRE_MAGIC'
  | 'ERR_WIRE_VERSION'
  | 'ERR_WIRE_TYPE'
  | 'ERR_WIRE_FLAGS'
  | 'ERR_WIRE_TRUNCATED'
  | 'ERR_WIRE_TOO_LARGE'
  | 'ERR_WIRE_CHUNK'
  | 'ERR_WIRE_PENDING'
  | 'ERR_WIRE_PAYLOAD'
  | 'ERR_WIRE_OPTIONS'
  /** An unknown hidden-state dtype tag, or fp16 hidden values that are not fp16 values. */
  | 'ERR_WIRE_DTYPE'

/**
 * Bytes from a peer are not a valid frame or message, or a message we were asked to send is
 * invalid. Named WireProtocolError because `WireError` is already the `{name, code, message}` shape.
 */
export class WireProtocolError extends ButterflyError {
  override readonly name = 'WireProtocolError'
  declare readonly code: WireProtocolErrorCode
  constructor(code: WireProtocolErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
  }
}

export type PlacementErrorCode = 'ERR_PLACEMENT_NO_CAPACITY' | 'ERR_PLACEMENT_INPUT'

/**
 * No plan fits the mesh (ERR_PLACEMENT_NO_CAPACITY: the message says how much memory the mesh has
 * and the model needs), or a peer's announced capacity or a planning option is invalid
 * (ERR_PLACEMENT_INPUT).
 */
export class PlacementError extends ButterflyError {
  override readonly name = 'PlacementError'
  declare readonly code: PlacementErrorCode
  /** Memory of the usable peers, in bytes (no-capacity errors only). */
  readonly availableBytes: number | undefined
  /** Least memory any plan needs, in bytes (no-capacity errors only). */
  readonly requiredBytes: number | undefined

  constructor(
    code: PlacementErrorCode,
    message: string,
    options?: { availableBytes?: number; requiredBytes?: number; cause?: unknown },
  ) {
    super(code, message, options)
    this.availableBytes = options?.availableBytes
    this.requiredBytes = options?.requiredBytes
  }
}

export type TransportErrorCode =
  | 'ERR_CHANNEL_CLOSED'
  | 'ERR_DIAL_FAILED'
  | 'ERR_DIAL_TIMEOUT'
  | 'ERR_SIGNAL_INVALID'
  | 'ERR_TRANSPORT_OPTIONS'

/** A peer channel is closed or cannot be opened in time, a signaling payload is malformed, or options are bad. */
export class TransportError extends ButterflyError {
  override readonly name = 'TransportError'
  declare readonly code: TransportErrorCode
  constructor(code: TransportErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
  }
}

/** A remote stage did not answer in time, answered out of turn, or went away. */
export class StageError extends ButterflyError {
  override readonly name = 'StageError'
  constructor(
    code:
      | 'ERR_STEP_TIMEOUT'
      | 'ERR_STAGE_GONE'
      | 'ERR_STAGE_REPLY'
      | 'ERR_NO_PLAN'
      | 'ERR_STAGE_BUSY'
      | 'ERR_HIDDEN_UNAVAILABLE'
      // A chained step could not go on to the next peer of its route (wire/step-route.ts).
      | 'ERR_CHAIN_LINK',
    message: string,
  ) {
    super(code, message)
  }
}

export type GatewayErrorCode =
  /** Too many generations are running and waiting on the mesh; retry after `retryAfterSeconds`. */
  | 'ERR_QUEUE_FULL'
  /** The generation would wait (or has waited) longer than the queue's bound; retry after `retryAfterSeconds`. */
  | 'ERR_QUEUE_TIMEOUT'
  /** The mesh has no plan to serve with (no worker joined, or none fits). */
  | 'ERR_MESH_NO_PLAN'
  /** A plan exists but its stages did not finish loading or connecting in time. */
  | 'ERR_PLAN_NOT_READY'

/** The server's gateway cannot take or serve a generation on a mesh right now. */
export class GatewayError extends ButterflyError {
  override readonly name = 'GatewayError'
  constructor(
    code: GatewayErrorCode,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(code, message)
  }
}

export type IdentityErrorCode = 'ERR_IDENTITY_KEY' | 'ERR_IDENTITY_FILE' | 'ERR_IDENTITY_INPUT'

/**
 * A peer identity key has the wrong size or shape (ERR_IDENTITY_KEY), a stored identity file
 * cannot be read or is corrupt (ERR_IDENTITY_FILE; the message names the file), or fields to
 * sign are invalid (ERR_IDENTITY_INPUT).
 */
export class IdentityError extends ButterflyError {
  override readonly name = 'IdentityError'
  declare readonly code: IdentityErrorCode
  constructor(code: IdentityErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
  }
}

export type VerifyErrorCode =
  | 'ERR_VERIFY_INPUT'
  | 'ERR_VERIFY_CLASS'
  | 'ERR_NO_QUORUM'
  /** A generation whose window checks failed more often than GenerateOptions.maxRollbacks. */
  | 'ERR_TOO_MANY_ROLLBACKS'
  | 'ERR_FINGERPRINT_MAGIC'
  | 'ERR_FINGERPRINT_VERSION'
  | 'ERR_FINGERPRINT_TRUNCATED'
  | 'ERR_FINGERPRINT_TOO_LARGE'
  | 'ERR_FINGERPRINT_FIELD'

/**
 * Replica verification failed or was misused: no f+1 replicas agree on a stage's output
 * (ERR_NO_QUORUM, with the stage and the peers that disagreed), a fingerprint from a peer is
 * malformed (ERR_FINGERPRINT_*), a numeric class has no calibrated tolerance (ERR_VERIFY_CLASS),
 * or an argument is invalid (ERR_VERIFY_INPUT).
 */
export class VerifyError extends ButterflyError {
  override readonly name = 'VerifyError'
  declare readonly code: VerifyErrorCode
  /** Pipeline stage index (no-quorum errors only). */
  readonly stage: number | undefined
  /** Peers involved: for ERR_NO_QUORUM, the ones that disagreed with the best-supported output. */
  readonly peers: readonly string[]

  constructor(
    code: VerifyErrorCode,
    message: string,
    options?: { stage?: number; peers?: readonly string[]; cause?: unknown },
  ) {
    super(code, message, options)
    this.stage = options?.stage
    this.peers = options?.peers ?? []
  }
}
