import type { ModelConfig } from '@butterfly/core'
import { type Corpus, checkCorpusFits, heldOutWindows, type Window } from './corpus.js'
import { TrainError } from './errors.js'
import { GradPool } from './grad-pool.js'
import { AdamW, clipGradNorm, learningRate } from './optimizer.js'
import { ParamLayout } from './param-layout.js'
import { configForShape, type ModelShape } from './presets.js'
import { Rng } from './rng.js'

export interface TrainOptions {
  readonly corpus: Corpus
  readonly shape: ModelShape
  readonly steps: number
  /** Windows of `shape.context` tokens per step, over all shards. */
  readonly batch: number
  /** Fixed split of each batch; results are bit-identical for any threads <= shards. */
  readonly shards: number
  readonly threads: number
  readonly seed: number
  readonly lr: number
  readonly minLr: number
  readonly warmupSteps: number
  readonly weightDecay: number
  readonly beta1: number
  readonly beta2: number
  readonly gradClip: number
  /** Steps between evaluations on the fixed samples; 0 evaluates only at the end. */
  readonly evalInterval: number
  /** Windows in each fixed evaluation sample (one from the training split, one held out). */
  readonly evalWindows: number
  /** Score every held-out byte at the end (otherwise only the fixed sample). */
  readonly fullEval: boolean
}

export const DEFAULT_HYPERPARAMETERS = {
  steps: 800,
  batch: 8,
  shards: 2,
  seed: 1337,
  lr: 2e-3,
  minLr: 2e-4,
  warmupSteps: 50,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.99,
  gradClip: 1,
  evalInterval: 100,
  evalWindows: 32,
  fullEval: true,
} as const

export type TrainEvent =
  | {
      readonly kind: 'step'
      readonly step: number
      readonly loss: number
      readonly lr: number
      readonly gradNorm: number
    }
  | { readonly kind: 'eval'; readonly step: number; readonly trainLoss: number; readonly valLoss: number }
  | { readonly kind: 'final-eval'; readonly windows: number }

export interface TrainResult {
  readonly config: ModelConfig
  readonly params: Float32Array
  /** Mean loss per character on the fixed training sample after the last step. */
  readonly trainLoss: number
  /** Mean loss per character on the held-out split: every byte when fullEval, else the fixed sample. */
  readonly valLoss: number
  readonly valScope: 'full' | 'sample'
  readonly history: ReadonlyArray<{ step: number; trainLoss: number; valLoss: number }>
  readonly trainSeconds: number
  readonly evalSeconds: number
  readonly tokensPerStep: number
}

/**
 * Trains a byte-level Llama from scratch. Deterministic: the seed fixes the initial weights
 * (stream seed), the batches (seed + 1) and the evaluation samples (seed + 2), and the batch is
 * always cut into the same shards summed in the same order, whatever the thread count.
 */
export async function train(
  o: TrainOptions,
  onEvent: (e: TrainEvent) => void = () => undefined,
): Promise<TrainResult> {
  checkOptions(o)
  const config = configForShape(o.shape)
  const T = o.shape.context
  checkCorpusFits(o.corpus, T)
  const layout = new ParamLayout(config)
  const params = new Float32Array(new SharedArrayBuffer(layout.size * 4))
  layout.init(params, new Rng(o.seed))
  const decay = new Uint8Array(layout.size)
  for (const [a, b] of layout.decayRanges()) decay.fill(1, a, b)
  const optimizer = new AdamW(layout.size, decay, {
    beta1: o.beta1,
    beta2: o.beta2,
    eps: 1e-8,
    weightDecay: o.weightDecay,
  })
  const perShard = o.batch / o.shards
  const pool = new GradPool({
    config,
    corpus: o.corpus,
    params,
    batch: perShard,
    seqLen: T,
    shards: o.shards,
    threads: o.threads,
  })
  const dataRng = new Rng(o.seed + 1)
  const evalRng = new Rng(o.seed + 2)
  const { trainEnd, ids } = o.corpus
  // Window s scores bytes [s, s + T): training windows stay inside the training split.
  const trainStarts = trainEnd - T + 1
  const valFirst = trainEnd
  const valStarts = ids.length - T + 1 - valFirst
  const sample = (n: number, first: number, count: number): Window[] =>
    Array.from({ length: n }, () => ({ start: first + evalRng.int(count), firstRow: 0 }))
  const trainSample = sample(o.evalWindows, 0, trainStarts)
  const valSample = sample(o.evalWindows, valFirst, valStarts)
  const meanLoss = async (w: readonly Window[]) =>
    (await pool.loss(w)) / w.reduce((n, x) => n + T - x.firstRow, 0)
  const history: Array<{ step: number; trainLoss: number; valLoss: number }> = []
  const evaluate = async (step: number) => {
    const entry = { step, trainLoss: await meanLoss(trainSample), valLoss: await meanLoss(valSample) }
    history.push(entry)
    onEvent({ kind: 'eval', ...entry })
    return entry
  }
  const scale = 1 / (o.batch * T)
  const sum = pool.grads[0] as Float32Array
  let evalMs = 0
  const started = performance.now()
  try {
    for (let step = 0; step < o.steps; step++) {
      const starts = Array.from({ length: o.shards }, () =>
        Array.from({ length: perShard }, () => dataRng.int(trainStarts)),
      )
      const losses = await pool.grad(starts, scale)
      // Shard 0's buffer becomes the sum, added in shard order.
      for (let s = 1; s < o.shards; s++) {
        const g = pool.grads[s] as Float32Array
        for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) + (g[i] as number)
      }
      const loss = losses.reduce((a, b) => a + b, 0) * scale
      if (!Number.isFinite(loss))
        throw new TrainError('ERR_TRAIN_DIVERGED', `loss is ${loss} at step ${step}`)
      const gradNorm = clipGradNorm(sum, o.gradClip)
      const lr = learningRate(step, o)
      optimizer.step(params, sum, lr)
      onEvent({ kind: 'step', step: step + 1, loss, lr, gradNorm })
      const done = step + 1
      if (o.evalInterval > 0 && done % o.evalInterval === 0 && done < o.steps) {
        const t = performance.now()
        await evaluate(done)
        evalMs += performance.now() - t
      }
    }
    const t = performance.now()
    const last = await evaluate(o.steps)
    let valLoss = last.valLoss
    if (o.fullEval) {
      const windows = heldOutWindows(o.corpus, T)
      onEvent({ kind: 'final-eval', windows: windows.length })
      valLoss = await meanLoss(windows)
    }
    evalMs += performance.now() - t
    return {
      config,
      params: new Float32Array(params),
      trainLoss: last.trainLoss,
      valLoss,
      valScope: o.fullEval ? 'full' : 'sample',
      history,
      trainSeconds: (performance.now() - started - evalMs) / 1000,
      evalSeconds: evalMs / 1000,
      tokensPerStep: o.batch * T,
    }
  } finally {
    await pool.close()
  }
}

function checkOptions(o: TrainOptions): void {
  const bad = (msg: string) => new TrainError('ERR_TRAIN_CONFIG', msg)
  const ints: Array<[string, number, number]> = [
    ['steps', o.steps, 0],
    ['batch', o.batch, 1],
    ['shards', o.shards, 1],
    ['threads', o.threads, 1],
    ['seed', o.seed, 0],
    ['warmupSteps', o.warmupSteps, 0],
    ['evalInterval', o.evalInterval, 0],
    ['evalWindows', o.evalWindows, 1],
  ]
  for (const [name, v, min] of ints) {
    if (!Number.isSafeInteger(v) || v < min) throw bad(`${name} must be an integer >= ${min}, got ${v}`)
  }
  if (o.batch % o.shards !== 0) throw bad(`batch (${o.batch}) must be a multiple of shards (${o.shards})`)
  if (o.threads > o.shards) throw bad(`threads (${o.threads}) cannot exceed shards (${o.shards})`)
  const positive: Array<[string, number]> = [
    ['lr', o.lr],
    ['gradClip', o.gradClip],
  ]
  for (const [name, v] of positive)
    if (!(v > 0 && Number.isFinite(v))) throw bad(`${name} must be positive, got ${v}`)
  if (!(o.minLr >= 0 && o.minLr <= o.lr)) throw bad(`minLr must be in [0, lr], got ${o.minLr}`)
  if (!(o.weightDecay >= 0 && o.weightDecay < 1))
    throw bad(`weightDecay must be in [0, 1), got ${o.weightDecay}`)
  for (const [name, v] of [
    ['beta1', o.beta1],
    ['beta2', o.beta2],
  ] as const) {
    if (!(v >= 0 && v < 1)) throw bad(`${name} must be in [0, 1), got ${v}`)
  }
}
