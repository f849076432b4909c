/**
 * @butterfly/node-worker — the headless worker.
 *
 * - `createNodeBackend(init)`: InferenceBackend over onnxruntime-node.
 * - `loadModel(spec)`, `resolveModelDir(spec, cache, download)`, `writeSyntheticModel(...)`:
 *   model directories (single-file or sharded safetensors), `synthetic:NAME[:fp16|:int4]` models, and
 *   `hf:ORG/REPO[@REV]` / `https://…/` models downloaded into the cache.
 * - `downloadModel(spec, cache, options)`: the resumable, checksummed download behind those;
 *   `parseRemoteSpec`, `isRemoteSpec`, `resolveHfEndpoint`, `describeSpec` for specs;
 *   `downloadOptions(flag)` wires a CLI's --hf-endpoint, progress bar and log lines;
 *   `ModelDownloadError` with its stable codes (ERR_DOWNLOAD_*, ERR_MODEL_SPEC).
 * - `openLocalWeights(dir)`: a directory's weights across shards (`ShardedSafetensors`).
 * - `writeWeightsFile(path, config, dtype, values)`: streams a model.safetensors as F32, F16 or
 *   int4 (projections int4, the rest F16); `convertModelDir(src, out, dtype)` re-encodes a local
 *   float model directory.
 * - `EMBEDDED_MODEL_DIR`: the committed default model (models/shakespeare).
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
export {
  CliUsageError,
  DeviceUnavailableError,
  ImportError,
  ModelDownloadError,
  type ModelDownloadErrorCode,
  ModelNotFoundError,
} from './errors.js'
export { FileSource } from './file-source.js'
export { type GenerateOptions, runGenerate } from './generate-command.js'
export { type DownloadModelOptions, type DownloadProgress, downloadModel } from './hub/download-model.js'
export { downloadOptions } from './hub/download-options.js'
export { terminalProgress } from './hub/download-progress.js'
export { downloadFile, type FileExpectation } from './hub/file-download.js'
export {
  DEFAULT_HF_ENDPOINT,
  describeSpec,
  isRemoteSpec,
  parseRemoteSpec,
  type RemoteModelSpec,
  resolveHfEndpoint,
} from './hub/model-spec.js'
export { type ImportOptions, runImport } from './import/import-command.js'
export { type WriteOptions, type WriteResult, writeImportedModel } from './import/model-writer.js'
export { type OpenedSource, openImportSource } from './import/open-import-source.js'
export { IMPORT_DTYPES, type ImportDtype } from './import/output-dtype.js'
export { startWorkerNode, type WorkerNode, type WorkerNodeInit } from './join/worker-node.js'
export { createLocalPipeline, type LocalPipelineOptions } from './local-pipeline.js'
export { openLocalWeights } from './local-weights.js'
export { convertModelDir, type ModelDtype, writeWeightsFile } from './model-convert.js'
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
