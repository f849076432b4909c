import { writeFile } from 'node:fs/promises'
import type { TrainOptions, TrainResult } from './trainer.js'

/** Writes training.json next to the model: hyperparameters, losses and timings, for TRAINING.md and audits. */
export async function writeTrainingReport(
  file: string,
  r: { options: TrainOptions; result: TrainResult; wallSeconds: number; cpuSeconds: number; cpu: string },
): Promise<void> {
  const { corpus, ...hyper } = r.options
  const res = r.result
  const report = {
    corpus: { file: corpus.name, bytes: corpus.ids.length, trainBytes: corpus.trainEnd },
    hyperparameters: hyper,
    parameters: res.params.length,
    tokensPerStep: res.tokensPerStep,
    trainLoss: res.trainLoss,
    valLoss: res.valLoss,
    valScope: res.valScope,
    history: res.history,
    trainSeconds: res.trainSeconds,
    evalSeconds: res.evalSeconds,
    wallSeconds: r.wallSeconds,
    /** CPU time of all threads; on an idle machine wall time is about this over the thread count. */
    cpuSeconds: r.cpuSeconds,
    stepsPerSecond: hyper.steps / res.trainSeconds,
    tokensPerSecond: (hyper.steps * res.tokensPerStep) / res.trainSeconds,
    machine: { cpu: r.cpu, node: process.version },
  }
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`)
}
