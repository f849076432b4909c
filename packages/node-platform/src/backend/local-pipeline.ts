import { type InferenceBackend, type Pipeline, type StageSession, uniformPartition } from '@butterfly/core'
import type { LoadedModel } from '../models/model-store.js'

export interface LocalPipelineOptions {
  readonly stages: number
  readonly topK?: number
}

/** All K stages of a model in this process: the single-machine pipeline. */
export async function createLocalPipeline(
  model: LoadedModel,
  backend: InferenceBackend,
  options: LocalPipelineOptions,
): Promise<Pipeline & { dispose(): Promise<void> }> {
  const ranges = uniformPartition(model.config.numLayers, options.stages)
  const stages: StageSession[] = []
  try {
    for (const r of ranges) {
      stages.push(
        await backend.createStage(
          {
            config: model.config,
            layerStart: r.start,
            layerEnd: r.end,
            ...(options.topK === undefined ? {} : { topK: options.topK }),
          },
          model.weights,
        ),
      )
    }
  } catch (err) {
    await Promise.all(stages.map((s) => s.dispose()))
    throw err
  }
  return {
    stages,
    maxContext: model.config.maxContext,
    dispose: async () => {
      await Promise.all(stages.map((s) => s.dispose()))
    },
  }
}
