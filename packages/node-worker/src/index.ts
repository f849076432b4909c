/**
 * @butterfly/node-worker — the headless worker.
 *
 * - `createNodeBackend(init)`: InferenceBackend over onnxruntime-node.
 * - `loadModel(spec)`, `resolveModelDir(spec)`, `writeSyntheticModel(...)`: model directories
 *   and `synthetic:NAME[:fp16|:int4]` models.
 * - `writeWeightsFile(path, config, dtype, values)`: streams a model.safetensors as F32, F16 or
 *   int4 (projections int4, the rest F16); `convertModelDir(src, out, dtype)` re-encodes a local
 *   float model directory.
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
export { convertModelDir, type ModelDtype, writeWeightsFile } from './model-convert.js'
export { cacheDir, type LoadedModel, loadModel, resolveModelDir, writeSyntheticModel } from './model-store.js'
export { nodeSignatureBackend, useNativeSignatures } from './native-signatures.js'
export { createNodeBackend, type NodeBackendInit } from './node-backend.js'
export { nodeWrtc } from './node-wrtc.js'
