import { createOrtStage, type InferenceBackend, type OrtRuntime } from '@butterfly/core'
import * as ort from 'onnxruntime-node'

export interface NodeBackendInit {
  /** Intra-op threads per stage session (default: onnxruntime's choice, one per core). */
  readonly threads?: number
}

/** InferenceBackend over onnxruntime-node's CPU execution provider. */
export function createNodeBackend(init: NodeBackendInit = {}): InferenceBackend {
  return {
    name: 'onnxruntime-node/cpu',
    createStage: (stageInit, weights) =>
      createOrtStage(
        stageInit,
        { ort: ort as unknown as OrtRuntime, weights },
        {
          sessionOptions: {
            executionProviders: ['cpu'],
            ...(process.env.BF_SPIN === '0'
              ? { extra: { session: { intra_op: { allow_spinning: '0' } } } }
              : {}),
            ...(init.threads === undefined ? {} : { intraOpNumThreads: init.threads }),
            ...(process.env.BF_THREADS ? { intraOpNumThreads: Number(process.env.BF_THREADS) } : {}),
          },
        },
      ),
  }
}
