/**
 * @butterfly/node-platform — what Butterfly's Node programs (the `butterfly-worker` CLI, the
 * server, the trainer's CLI) share: the Node implementations of core's ports and the model store.
 *
 * - `createNodeBackend(init)`: InferenceBackend over onnxruntime-node; `resolveDevice(request)`
 *   picks cuda / webgpu / cpu. `createStageCacheDir({dir, maxBytes})` keeps built stages on disk
 *   (on CPU pre-packed for the machine), so a restarted worker loads its stage in a fraction of
 *   the time (`init.stageCache`).
 * - `loadModel(spec)`, `resolveModelDir(spec, cache, download)`, `writeSyntheticModel(...)`:
 *   model directories (single-file or sharded safetensors), `synthetic:NAME[:fp16|:int4]` models, and
 *   `hf:ORG/REPO[@REV]` / `https://…/` models downloaded into the cache (`cacheDir()`);
 *   `WEIGHTS_FILE`, `EMBEDDED_MODEL_DIR` (the committed default model, models/shakespeare).
 * - `downloadModel(spec, cache, options)`: the resumable, checksummed download behind those;
 *   `downloadFile(...)` for one file; `parseRemoteSpec`, `isRemoteSpec`, `resolveHfEndpoint`,
 *   `describeSpec` for specs; `downloadOptions(flag)` wires a CLI's --hf-endpoint, progress bar and
 *   log lines; `terminalProgress(stream)` is that progress bar.
 * - `loadTokenizerFiles(dir)`: tokenizer.json, tokenizer_config.json, chat_template.jinja and
 *   generation_config.json of a model directory, each size-capped (`TOKENIZER_FILES`): the
 *   tokenizer, the chat template and the generation eos ids. `synthetic:NAME` presets listed in
 *   `SYNTHETIC_TOKENIZER_PACKAGES` get that real tokenizer (`writeRealTokenizer(dir, package)`).
 * - `openLocalWeights(dir)`: a directory's weights across shards (`ShardedSafetensors`); `FileSource`
 *   range-reads a local file.
 * - `writeWeightsFile(path, config, dtype, values)`: streams a model.safetensors as F32, F16 or
 *   int4 (projections int4, the rest F16); `convertModelDir(src, out, dtype)` re-encodes a local
 *   float model directory.
 * - `createLocalPipeline(model, backend, {stages})`: all stages in one process.
 * - `startWorkerNode(init, components)`: a mesh worker (join, load its layers, serve steps) with
 *   its identity from `loadOrCreateIdentity(path)` (`defaultIdentityPath()`) and native signatures.
 * - `nodeWrtc()`: the RTCPeerConnection implementation Node peers use (node-datachannel).
 * - `nodeSignatureBackend`, `useNativeSignatures()`: Ed25519 over node:crypto.
 * - `runCliMain(parse, {name})`, `reportCliError(err, {name})`: how every Butterfly CLI turns
 *   errors into `NAME: error [CODE]: message` and an exit code (also at `@butterfly/node-platform/cli`,
 *   which loads neither onnxruntime-node nor node-datachannel).
 * - `exists(path)`: whether anything is at a path.
 * - Errors: `CliUsageError` (ERR_CLI_USAGE), `ModelNotFoundError`, `DeviceUnavailableError`,
 *   `ModelDownloadError` with its stable codes (ERR_DOWNLOAD_*, ERR_MODEL_SPEC).
 *
 * The benchmarks (src/bench) are programs, not API; what the server's mesh bench reuses is at
 * `@butterfly/node-platform/bench`.
 */

export { type Device, type DeviceRequest, resolveDevice } from './backend/device.js'
export { createLocalPipeline, type LocalPipelineOptions } from './backend/local-pipeline.js'
export { createNodeBackend, type NodeBackendInit } from './backend/node-backend.js'
export {
  createStageCacheDir,
  DEFAULT_STAGE_CACHE_BYTES,
  type StageCacheDirInit,
} from './backend/stage-cache-dir.js'
export { type CliMainOptions, reportCliError, runCliMain } from './cli/cli-main.js'
export {
  CliUsageError,
  DeviceUnavailableError,
  ModelDownloadError,
  type ModelDownloadErrorCode,
  ModelNotFoundError,
  TurnError,
  type TurnErrorCode,
} from './errors.js'
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
export { freeTcpPort, freeUdpPort } from './mesh/free-port.js'
export { defaultIdentityPath, loadOrCreateIdentity } from './mesh/identity-store.js'
export { nodeSignatureBackend, useNativeSignatures } from './mesh/native-signatures.js'
export { nodeWrtc } from './mesh/node-wrtc.js'
export { probeTurn, probeTurnServers } from './mesh/turn-probe.js'
export { startWorkerNode, type WorkerNode, type WorkerNodeInit } from './mesh/worker-node.js'
export { exists } from './models/exists.js'
export { FileSource } from './models/file-source.js'
export { localWeightsFingerprint, openLocalWeights } from './models/local-weights.js'
export { convertModelDir, type ModelDtype, writeWeightsFile } from './models/model-convert.js'
export {
  cacheDir,
  EMBEDDED_MODEL_DIR,
  type LoadedModel,
  loadModel,
  resolveModelDir,
  WEIGHTS_FILE,
  writeSyntheticModel,
} from './models/model-store.js'
export { SYNTHETIC_TOKENIZER_PACKAGES, writeRealTokenizer } from './models/synthetic-tokenizers.js'
export {
  loadTokenizerFiles,
  OPTIONAL_CHAT_FILES,
  readCapped,
  TOKENIZER_FILES,
  type TokenizerFileName,
  type TokenizerFiles,
} from './models/tokenizer-files.js'
