/**
 * @butterfly/node-worker — the headless worker.
 *
 * - `createNodeBackend(init)`: InferenceBackend over onnxruntime-node.
 * - `loadModel(spec)`, `resolveModelDir(spec)`, `writeSyntheticModel(...)`: model directories
 *   and `synthetic:NAME` models.
 * - `createLocalPipeline(model, backend, {stages})`: all stages in one process.
 * - `main(argv)`, `buildCli()`: the `butterfly-worker` CLI.
 */
export { buildCli, main } from './cli.js'
export { CliUsageError, DeviceUnavailableError, ModelNotFoundError } from './errors.js'
export { FileSource } from './file-source.js'
export { type GenerateOptions, runGenerate } from './generate-command.js'
export { createLocalPipeline, type LocalPipelineOptions } from './local-pipeline.js'
export { cacheDir, type LoadedModel, loadModel, resolveModelDir, writeSyntheticModel } from './model-store.js'
export { createNodeBackend, type NodeBackendInit } from './node-backend.js'
