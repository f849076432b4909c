import type { InferenceBackend } from '../engine/inference-backend.js'
import type { ModelConfig } from '../model/model-config.js'
import { syntheticStoredWeights } from '../quant/synthetic-weights.js'

/**
 * The throughput figure a worker announces at join: single-token layer evaluations per
 * second for this model's layer shape on this machine. One middle layer with synthetic
 * weights of the real shape is built and decoded for `steps` tokens; the median step counts.
 */
export async function benchmarkLayerSteps(
  config: ModelConfig,
  backend: InferenceBackend,
  steps = 12,
): Promise<number> {
  // A one-layer model whose only layer is a middle layer: no embedding or head in the timing.
  const layer = config.numLayers >= 3 ? 1 : 0
  const stage = await backend.createStage(
    { config, layerStart: layer, layerEnd: layer + 1 },
    // Stored as the config says (int4 projections included), so the figure is this format's.
    syntheticStoredWeights(config),
  )
  try {
    const hidden = new Float32Array(config.hiddenSize).fill(0.01)
    const times: number[] = []
    for (let i = 0; i <= steps; i++) {
      const started = performance.now()
      if (stage.isFirst) await stage.step('bench', { tokens: [1], seqLen: 1, startPos: i })
      else await stage.step('bench', { hidden, seqLen: 1, startPos: i })
      if (i > 0) times.push(performance.now() - started)
    }
    times.sort((a, b) => a - b)
    const median = times[times.length >> 1] ?? 1
    return 1000 / Math.max(median, 1e-3)
  } finally {
    await stage.dispose()
  }
}
