import { PlacementError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import { validateModelConfig } from '../model/validate-model-config.js'
import { layerWeightShapes } from '../model/weight-names.js'
import { int4Bytes } from '../quant/int4.js'
import { isInt4Weight } from '../quant/weight-encoding.js'

export interface StageMemoryOptions {
  /**
   * Bytes per float weight as loaded (4 for fp32, 2 for fp16). Default 4: the engine runs fp32.
   * Under an int4 config the projections cost half a byte per weight plus a float32 scale per
   * block instead, whatever this says.
   */
  readonly bytesPerParam?: number
  /** Tokens of KV cache each stage reserves (fp32). Default: the model's maxContext. */
  readonly kvContext?: number
  /** Fixed cost of running any stage at all: runtime, activations, graph. Default 64 MiB. */
  readonly overheadBytes?: number
}

export const DEFAULT_BYTES_PER_PARAM = 4
export const DEFAULT_OVERHEAD_BYTES = 64 * 2 ** 20

/** What a stage's memory is made of, in bytes; a range costs `fixed(role) + layers * layerBytes`. */
export interface StageMemoryModel {
  readonly numLayers: number
  /** Weights of one decoder layer plus its fp32 KV cache for `kvContext` tokens. */
  readonly layerBytes: number
  /** Token embedding table (stage 0). */
  readonly embedBytes: number
  /** Final norm plus LM head table (last stage); for a tied head that table is the embeddings. */
  readonly headBytes: number
  /** What the last stage adds when it is also stage 0: a tied head shares the embedding table. */
  readonly headBytesWhenFirst: number
  readonly overheadBytes: number
}

/**
 * Bytes a stage holding layers [start, end) needs: its layers' weights, their fp32 KV cache for
 * `kvContext` tokens, the embeddings on stage 0, the final norm and LM head on the last stage, and
 * a fixed overhead. A tied head costs a second copy of the embeddings on a last stage that is not
 * also stage 0 (the graph reads the shared table through Gemm, so one stage never holds two).
 */
export function stageMemoryBytes(
  config: ModelConfig,
  start: number,
  end: number,
  options: StageMemoryOptions = {},
): number {
  const model = stageMemoryModel(config, options)
  if (
    !Number.isInteger(start) ||
    !Number.isInteger(end) ||
    start < 0 ||
    end <= start ||
    end > model.numLayers
  ) {
    throw new PlacementError(
      'ERR_PLACEMENT_INPUT',
      `layer range [${start}, ${end}) must be a non-empty integer range within [0, ${model.numLayers})`,
    )
  }
  return rangeBytes(model, start === 0, end === model.numLayers, end - start)
}

/** The byte costs behind stageMemoryBytes, validated once so planners can price many ranges. */
export function stageMemoryModel(config: ModelConfig, options: StageMemoryOptions = {}): StageMemoryModel {
  const c = validateModelConfig(config)
  const bytesPerParam = options.bytesPerParam ?? DEFAULT_BYTES_PER_PARAM
  const kvContext = options.kvContext ?? c.maxContext
  const overheadBytes = options.overheadBytes ?? DEFAULT_OVERHEAD_BYTES
  if (typeof bytesPerParam !== 'number' || !Number.isFinite(bytesPerParam) || bytesPerParam <= 0) {
    throw inputError(`bytesPerParam must be a positive finite number, got ${String(bytesPerParam)}`)
  }
  if (!Number.isInteger(kvContext) || kvContext < 1 || kvContext > c.maxContext) {
    throw inputError(`kvContext must be an integer in [1, ${c.maxContext}], got ${String(kvContext)}`)
  }
  if (typeof overheadBytes !== 'number' || !Number.isFinite(overheadBytes) || overheadBytes < 0) {
    throw inputError(`overheadBytes must be a non-negative finite number, got ${String(overheadBytes)}`)
  }
  const h = c.hiddenSize
  const kvDim = c.numKvHeads * c.headDim
  const q = c.quantization
  // int4 projections hold their packed levels plus one float32 scale per block (the graph widens
  // the file's float16 scales to the activations' type, as MatMulNBits requires).
  const matrixBytes = (n: number, k: number, int4: boolean) =>
    int4 && q !== undefined ? int4Bytes(n, k, q.blockSize, 4) : n * k * bytesPerParam
  // Every layer has layer 0's tensors (norms, projections fused or not, q/k norms, biases).
  let weightBytes = 0
  for (const [name, shape] of layerWeightShapes(c, 0)) {
    const [n = 1, k = 1] = shape
    weightBytes += shape.length === 2 ? matrixBytes(n, k, isInt4Weight(c, name)) : n * bytesPerParam
  }
  const kvBytes = 2 * kvDim * kvContext * 4
  const table = c.vocabSize * h * bytesPerParam
  const head = c.tieWordEmbeddings ? table : matrixBytes(c.vocabSize, h, q?.lmHead === true)
  const norm = h * bytesPerParam
  return {
    numLayers: c.numLayers,
    layerBytes: weightBytes + kvBytes,
    embedBytes: table,
    headBytes: norm + head,
    headBytesWhenFirst: c.tieWordEmbeddings ? norm : norm + head,
    overheadBytes,
  }
}

/** Bytes for `layers` layers in the given role; the one formula every planner prices ranges with. */
export function rangeBytes(
  model: StageMemoryModel,
  isFirst: boolean,
  isLast: boolean,
  layers: number,
): number {
  let fixed = model.overheadBytes
  if (isFirst) fixed += model.embedBytes
  if (isLast) fixed += isFirst ? model.headBytesWhenFirst : model.headBytes
  return fixed + layers * model.layerBytes
}

/** Most layers (capped at numLayers) that fit in `memoryBytes` in the given role; 0 if none. */
export function maxLayersInMemory(
  model: StageMemoryModel,
  isFirst: boolean,
  isLast: boolean,
  memoryBytes: number,
): number {
  const fixed = rangeBytes(model, isFirst, isLast, 0)
  if (fixed > memoryBytes) return 0
  let n = Math.min(model.numLayers, Math.floor((memoryBytes - fixed) / model.layerBytes))
  // Division rounds; settle on exactly what rangeBytes accepts so plans and checks agree.
  while (n > 0 && rangeBytes(model, isFirst, isLast, n) > memoryBytes) n--
  while (n < model.numLayers && rangeBytes(model, isFirst, isLast, n + 1) <= memoryBytes) n++
  return n
}

function inputError(message: string): PlacementError {
  return new PlacementError('ERR_PLACEMENT_INPUT', message)
}
