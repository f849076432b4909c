/**
 * @butterfly/node-worker — the headless worker.
 *
 * - `createNodeBackend(init)`: InferenceBackend over onnxruntime-node.
 * - `loadModel(spec)`, `resolveModelDir(spec)`, `writeSyntheticModel(...)`: model directories
 *   and `synthetic:NAME` models; `EMBEDDED_MODEL_DIR`: the committed default model.
 * - `createLocalPipeline(model, backend, {stages})`: all stages in one process.
 * - `main(argv)`, `buildCli()`: the `butterfly-worker` CLI (`generate`, `join`).
 * - `startWorkerNode(init, components)`: a mesh worker (join, load its layers, serve steps).
 * - `nodeWrtc()`: the RTCPeerConnection implementation Node peers use (node-datachannel).
 * - `resolveDevice(request)`: picks cuda / webgpu / cpu.
 * - `openRemoteModel(url)`, `HttpSource`: range-read a model a server publishes.
 */

export { transportBench } from './bench/transport-bench.js'
export { buildCli, main } from './cli.js'
export { type Device, type DeviceRequest, resolveDevice } from './device.js'
export { CliUsageError, DeviceUnavailableError, ModelNotFoundError } from './errors.js'
export { FileSource } from './file-source.js'
export { type GenerateOptions, runGenerate } from './generate-command.js'
export { startWorkerNode, type WorkerNode, type WorkerNodeInit } from './join/worker-node.js'
export { createLocalPipeline, type LocalPipelineOptions } from './local-pipeline.js'
export {
  cacheDir,
  EMBEDDED_MODEL_DIR,
  type LoadedModel,
  loadModel,
  resolveModelDir,
  writeSyntheticModel,
} from './model-store.js'
export { nodeSignatureBackend, useNativeSignatures } from './native-signatures.js'
export { createNodeBackend, type NodeBackendInit } from './node-backend.js'
export { nodeWrtc } from './node-wrtc.js'
