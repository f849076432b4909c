/**
 * @butterfly/node-worker — the headless worker.
 *
 * - `createNodeBackend(init)`: InferenceBackend over onnxruntime-node.
 * - `loadModel(spec)`, `resolveModelDir(spec)`, `writeSyntheticModel(...)`: model directories
 *   and `synthetic:NAME` models.
 * - `createLocalPipeline(model, backend, {stages})`: all stages in one process.
 * - `main(argv)`, `buildCli()`: the `butterfly-worker` CLI (`generate`, `import`, `join`).
 * - `runImport(opts, out)`, `openImportSource(path, tokenizer)`, `writeImportedModel(...)`: convert
 *   llama2.c, GGUF and Hugging Face checkpoints into a model directory (streamed, atomic).
 * - `startWorkerNode(init, components)`: a mesh worker (join, load its layers, serve steps).
 * - `nodeWrtc()`: the RTCPeerConnection implementation Node peers use (node-datachannel).
 * - `resolveDevice(request)`: picks cuda / webgpu / cpu.
 * - `openRemoteModel(url)`, `HttpSource`: range-read a model a server publishes.
 */

export { transportBench } from './bench/transport-bench.js'
export { buildCli, main } from './cli.js'
export { type Device, type DeviceRequest, resolveDevice } from './device.js'
export { CliUsageError, DeviceUnavailableError, ImportError, ModelNotFoundError } from './errors.js'
export { FileSource } from './file-source.js'
export { type GenerateOptions, runGenerate } from './generate-command.js'
export { type ImportOptions, runImport } from './import/import-command.js'
export { type WriteOptions, type WriteResult, writeImportedModel } from './import/model-writer.js'
export { type OpenedSource, openImportSource } from './import/open-import-source.js'
export { IMPORT_DTYPES, type ImportDtype } from './import/output-dtype.js'
export { startWorkerNode, type WorkerNode, type WorkerNodeInit } from './join/worker-node.js'
export { createLocalPipeline, type LocalPipelineOptions } from './local-pipeline.js'
export { cacheDir, type LoadedModel, loadModel, resolveModelDir, writeSyntheticModel } from './model-store.js'
export { nodeSignatureBackend, useNativeSignatures } from './native-signatures.js'
export { createNodeBackend, type NodeBackendInit } from './node-backend.js'
export { nodeWrtc } from './node-wrtc.js'
