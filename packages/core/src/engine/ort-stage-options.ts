import type { InferenceSession } from 'onnxruntime-common'
import type { Int4Compute } from '../onnx/matmul-nbits.js'
import type { StageGraph } from '../onnx/stage-graph.js'
import type { WeightProvider } from '../weights/weight-provider.js'
import type { OrtRuntime } from './ort-batch.js'
import type { StageCache } from './stage-cache.js'

// What createOrtStage (ort-stage.ts) takes: its components and options.

/**
 * Turns a built graph into a session. Environments differ in how external weights reach the
 * runtime (a file next to the model in Node, an in-memory blob in browsers).
 */
export type SessionLoader = (
  graph: StageGraph,
  options: InferenceSession.SessionOptions,
) => Promise<InferenceSession>

export interface OrtStageComponents {
  readonly ort: OrtRuntime
  readonly weights: WeightProvider
  /** Default: the model bytes with weights inline. */
  readonly loadSession?: SessionLoader
  /** Built stages kept between loads; needs weights with a fingerprint (StageCache). */
  readonly stageCache?: StageCache
}

export interface OrtStageOptions {
  readonly sessionOptions?: InferenceSession.SessionOptions
  /** Build with external weights; requires a `loadSession` that can resolve them. */
  readonly externalData?: boolean
  /** Most generations' decode steps one run computes (default 128). */
  readonly maxBatch?: number
  /**
   * Decode groups (default 1): of n generations decoding here, one run takes at most
   * ceil(n / microBatches), oldest first, so that the stages of a pipeline on separate machines
   * work on different groups at once instead of passing one batch along while the rest wait.
   * On one machine whose cores every stage shares it does not pay (`npm run bench`), as the
   * stages' work adds up either way.
   */
  readonly microBatches?: number
  /** Longer steps run in chunks of at most this many positions, between decode batches (default 128, at least 4). */
  readonly prefillChunk?: number
  /** How an int4 model's MatMulNBits multiply (StageGraphInit.int4Compute; default 'fp32'). */
  readonly int4Compute?: Int4Compute
}
