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

/** A weights file is corrupt or does not match the model config. Names the file and tensor. */
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

/** Generation state is inconsistent: context too long, step out of order, ... */
export class GenerationError extends ButterflyError {
  override readonly name = 'GenerationError'
  constructor(code: 'ERR_CONTEXT_OVERFLOW' | 'ERR_STEP_ORDER' | 'ERR_ABORTED', message: string) {
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
