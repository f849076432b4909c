/**
 * @butterfly/trainer — trains small byte-level Llama models on the CPU, reproducibly.
 *
 * - `train(options, onEvent)`: the training loop (AdamW, warmup + cosine, clipping, seeded
 *   batches, data-parallel over worker threads); `DEFAULT_HYPERPARAMETERS`.
 * - `main(argv)`, `buildCli()`: the `butterfly-train` CLI.
 * - `MODEL_PRESETS`, `configForShape(shape)`: model shapes and their Llama configs.
 * - `Transformer`: hand-written forward and backward pass of a Llama decoder over a batch.
 * - `ParamLayout`: where each tensor lives in the flat parameter vector; HF names and init.
 * - `writeModelDir(dir, config, params)`, `readModelDir(dir)`: Butterfly / HF model directories.
 * - `loadCorpus(file)`, `corpusFromText(name, text)`, `heldOutWindows(corpus, T)`: the data and its 90/10 split.
 * - `gemmNT`, `transpose`: the matrix kernel everything runs on.
 * - `AdamW`, `learningRate`, `clipGradNorm`: the optimizer pieces; `Rng`: the seeded generator.
 * - Errors: `TrainUsageError` (ERR_CLI_USAGE), `CorpusError` (ERR_CORPUS_*), `TrainError` (ERR_TRAIN_*).
 */

export { buildCli, main } from './cli.js'
export {
  BOS_ID,
  BYTE_OFFSET,
  type Corpus,
  checkCorpusFits,
  corpusFromBytes,
  corpusFromText,
  heldOutWindows,
  loadCorpus,
  type Window,
} from './corpus.js'
export {
  CorpusError,
  type CorpusErrorCode,
  TrainError,
  type TrainErrorCode,
  TrainUsageError,
} from './errors.js'
export { type Floats, gemmNT, transpose } from './gemm.js'
export { readModelDir, writeModelDir } from './model-dir.js'
export { AdamW, type AdamWOptions, clipGradNorm, learningRate, type ScheduleOptions } from './optimizer.js'
export { type LayerOffsets, ParamLayout } from './param-layout.js'
export {
  BYTE_VOCAB,
  configForShape,
  MODEL_PRESETS,
  type ModelPresetName,
  type ModelShape,
} from './presets.js'
export { Rng } from './rng.js'
export {
  DEFAULT_HYPERPARAMETERS,
  type TrainEvent,
  type TrainOptions,
  type TrainResult,
  train,
} from './trainer.js'
export { type Precision, Transformer } from './transformer.js'
