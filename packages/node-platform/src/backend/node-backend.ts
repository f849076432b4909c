import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  createOrtStage,
  type InferenceBackend,
  type Int4Compute,
  type OrtRuntime,
  type SessionLoader,
  type StageCache,
} from '@butterfly/core'
import * as ort from 'onnxruntime-node'
import type { Device } from './device.js'

export interface NodeBackendInit {
  /** Execution provider; CPU by default. Resolve 'auto' with resolveDevice first. */
  readonly device?: Device
  /** Intra-op threads per stage session (default: onnxruntime's choice, one per core). */
  readonly threads?: number
  /**
   * Let idle intra-op threads spin (default false). Spinning shaves microseconds off one
   * session but, with several stage sessions in a process or a worker waiting on the network
   * between steps, the spinners steal cores from the session that is running.
   */
  readonly spin?: boolean
  /** Most generations one run batches (OrtStageOptions.maxBatch). */
  readonly maxBatch?: number
  /** Decode groups a stage's generations run in (OrtStageOptions.microBatches; default 1). */
  readonly microBatches?: number
  /** Prompt chunk size between decode batches (OrtStageOptions.prefillChunk). */
  readonly prefillChunk?: number
  /** int4 models: 'int8' quantises activations for integer dot products (Int4Compute). */
  readonly int4Compute?: Int4Compute
  /**
   * Built stages kept between loads (createStageCacheDir); used for weights with a
   * fingerprint (loadModel's and a worker's downloads have one).
   */
  readonly stageCache?: StageCache
}

/** InferenceBackend over onnxruntime-node's CPU execution provider. */
export function createNodeBackend(init: NodeBackendInit = {}): InferenceBackend {
  return {
    name: `onnxruntime-node/${init.device ?? 'cpu'}`,
    createStage: (stageInit, weights) =>
      createOrtStage(
        stageInit,
        {
          ort: ort as unknown as OrtRuntime,
          weights,
          loadSession: loadFromFiles,
          ...(init.stageCache === undefined ? {} : { stageCache: init.stageCache }),
        },
        {
          externalData: true,
          ...(init.maxBatch === undefined ? {} : { maxBatch: init.maxBatch }),
          ...(init.prefillChunk === undefined ? {} : { prefillChunk: init.prefillChunk }),
          ...(init.microBatches === undefined ? {} : { microBatches: init.microBatches }),
          ...(init.int4Compute === undefined ? {} : { int4Compute: init.int4Compute }),
          sessionOptions: {
            executionProviders:
              init.device === undefined || init.device === 'cpu' ? ['cpu'] : [init.device, 'cpu'],
            ...(init.threads === undefined ? {} : { intraOpNumThreads: init.threads }),
            extra: { session: { intra_op: { allow_spinning: init.spin ? '1' : '0' } } },
          },
        },
      ),
  }
}

/**
 * onnxruntime-node resolves external weights only relative to a model file, so the stage is
 * written to a private temp directory, loaded, and the directory removed at once (the
 * session holds the data from then on).
 */
const loadFromFiles: SessionLoader = async (graph, options) => {
  if (graph.external === undefined) return ort.InferenceSession.create(graph.bytes, options)
  const dir = await mkdtemp(join(tmpdir(), 'butterfly-stage-'))
  try {
    const modelPath = join(dir, 'stage.onnx')
    await writeFile(modelPath, graph.bytes)
    const file = await open(join(dir, graph.external.location), 'w')
    try {
      for (const chunk of graph.external.chunks) await file.write(chunk)
    } finally {
      await file.close()
    }
    return await ort.InferenceSession.create(modelPath, options)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
