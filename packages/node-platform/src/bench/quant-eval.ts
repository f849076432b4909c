import type { InferenceBackend, StageSession } from '@butterfly/core'
import type { LoadedModel } from '../models/model-store.js'

/**
 * Teacher-forced evaluation of one model over a token sequence: the text is cut into windows of
 * at most `window` tokens (each a fresh generation, so the context never exceeds the model's);
 * inside a window each token is fed in turn and the full logits of the next-token prediction are
 * kept. Position 0 of every window is context only.
 */
export interface TeacherForcedResult {
  /** Mean negative log-likelihood of the true next token, nats per token. */
  readonly lossNats: number
  /** argmax of the logits at every predicted position (for agreement with another run). */
  readonly argmax: Int32Array
  readonly positions: number
}

export async function teacherForced(
  model: LoadedModel,
  backend: InferenceBackend,
  tokens: readonly number[],
  window: number,
): Promise<TeacherForcedResult> {
  const { config } = model
  const w = Math.max(2, Math.min(window, config.maxContext))
  const stage: StageSession = await backend.createStage(
    { config, layerStart: 0, layerEnd: config.numLayers, emitLogits: true },
    model.weights,
  )
  try {
    const argmax: number[] = []
    let nll = 0
    for (let start = 0, g = 0; start + 1 < tokens.length; start += w, g++) {
      const chunk = tokens.slice(start, start + w)
      const id = `eval-${g}`
      for (let i = 0; i + 1 < chunk.length; i++) {
        const out = await stage.step(id, { tokens: [chunk[i] as number], seqLen: 1, startPos: i })
        const logits = out.logits as Float32Array
        nll += logSumExp(logits) - (logits[chunk[i + 1] as number] as number)
        argmax.push(argmaxOf(logits))
      }
      stage.endGeneration(id)
    }
    return { lossNats: nll / argmax.length, argmax: Int32Array.from(argmax), positions: argmax.length }
  } finally {
    await stage.dispose()
  }
}

/** Fraction of positions where two runs over the same tokens pick the same top token. */
export function topOneAgreement(a: Int32Array, b: Int32Array): number {
  if (a.length !== b.length || a.length === 0) return Number.NaN
  let same = 0
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++
  return same / a.length
}

function logSumExp(x: Float32Array): number {
  let max = Number.NEGATIVE_INFINITY
  for (const v of x) max = Math.max(max, v)
  let sum = 0
  for (const v of x) sum += Math.exp(v - max)
  return max + Math.log(sum)
}

function argmaxOf(x: Float32Array): number {
  let best = 0
  for (let i = 1; i < x.length; i++) if ((x[i] as number) > (x[best] as number)) best = i
  return best
}
