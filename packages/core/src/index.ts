/**
 * @butterfly/core — the isomorphic heart of Butterfly: no DOM, no `node:*` imports. Folders in
 * layer order (a folder imports only its own layer and those below; see README.md).
 *
 * L0 — `errors.ts`, `base/`
 * - Errors: every class in `errors.ts` has a stable `code` and crosses the wire as
 *   `{name, code, message}` (`errorFromWire` rebuilds it).
 * - `Xoshiro128ss`, `xoshiro128ssNext(state)`: the seeded xoshiro128** generator (and its bare step).
 * - `TopKLogits`: what the last stage returns instead of full logits; `RowTopK`, the same for
 *   every position of a step (`StageStepInput.allRows`).
 *
 * L1 — data and protocols
 * - `weights/`: `ByteSource` / `bytesSource` / `readExact` (random-access bytes),
 *   `SafetensorsReader.open(source)`, `safetensorsLayout(...)`, `encodeSafetensors(...)` (one
 *   tensor at a time by byte range), `parseSafetensorsIndex(json, file)`, `isShardName(name)`,
 *   `ShardedSafetensors` (shards opened on first use), `toFloat32` / `fromFloat32` (fp16/bf16),
 *   `RawTensor` / `DType`, `WeightProvider` (fetches one named tensor).
 * - `tokenizers/`: `Tokenizer`, `ByteTokenizer`, `HfTokenizer` (tokenizer.json via
 *   @huggingface/tokenizers), `ChatTemplate` (Jinja chat templates via @huggingface/jinja),
 *   `encodeChatPrompt` (one BOS at most), `stopTokenIdsOf`, `generationConfigEosIds`.
 * - `model/`: `ModelConfig`, `parseModelConfig(json)`, `modelConfigToJson(config)` (Llama-family
 *   configs), RoPE caches, weight names and shapes, `ReferenceModel` (slow, obviously-correct
 *   forward pass used as ground truth), `syntheticConfig(name)` / `syntheticTensor(...)`
 *   (deterministic seeded models).
 * - `quant/`: int4 weights: `quantizeInt4` / `dequantizeInt4` (MatMulNBits layout, block 32,
 *   symmetric), `encodeLinearWeight(name, data, shape, dtype)` and `linearWeightSpecs(...)` for
 *   writers (the importer), `isInt4Weight(config, name)`, `withInt4Quantization(config)`,
 *   `readDequantized(...)` for float64 references, `syntheticStoredWeights(config)` for synthetic
 *   models as their files store them.
 * - `formats/`: foreign checkpoints seen as Hugging Face Llama models (`ImportSource`: config,
 *   tensors read one at a time in HF layout, tokenizer.json). `openLlama2cCheckpoint(source)`,
 *   `readLlama2cTokenizer` / `llama2cTokenizerJson(source, vocab)` (llama2.c model.bin, legacy and
 *   version 1, and tokenizer.bin); `readGguf(source)`, `openGgufModel(source)` (GGUF v2/v3,
 *   SentencePiece or byte-level BPE vocabularies as tokenizer.json), `dequantizeGgml(type, bytes)`
 *   for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K; `locateTensors`, `hfImportSource` (HF
 *   directories, sharded or not); `spmTokenizerJson(vocab)`; `metaToHfRows(...)` (Meta's
 *   interleaved RoPE q/k rows to HF rotate_half).
 * - `wire/`: the wire protocol (`encodeMessage`, `Reassembler`, `sendWithBackpressure`):
 *   versioned binary frames of at most 64 KiB, every field validated; hidden states fp32, or
 *   fp16 when a mesh opts in (`HiddenDtype`, `roundToFp16`).
 * - `transport/`: `Transport` / `FrameChannel`, WebRTC (`createWebRtcTransport`, simple-peer,
 *   `IceServer`) and in-memory (`createMemoryTransport`); `MessageConnection` adds messages on top.
 * - `identity/`: `generateIdentity()`, `peerIdFromPublicKey(key)`, `signResult` / `verifyResult`
 *   (Ed25519 over step results), `signJoinProof` / `verifyJoinProof` (join challenge).
 *
 * L2 — `onnx/`: `buildStageGraph(init, weights)`, the ONNX model of a contiguous layer range.
 *
 * L3
 * - `verify/`: calibrated tolerances per numeric class, TOPLOC-style hidden-state fingerprints
 *   (every row of a step up to 512; `firstDisagreeingRow`, `rowMatchesFingerprint`), the last
 *   stage's token rows (`tokenRowsOf`, `encodeTokenRows` / `decodeTokenRows`, `tokenAgrees`),
 *   quorum votes (`voteHidden`, `voteToken`), `ReputationBook` (flags, trust, probation, proven lies).
 * - `remote/`: `openRemoteModel(baseUrl)`, a model a server publishes (manifest with per-tensor
 *   SHA-256), fetched one tensor at a time by HTTP Range, single-file or sharded.
 *
 * L4 — `engine/`: `InferenceBackend`, `StageSession` (what each runtime implements, `truncate`
 * rolling a generation's KV cache back, `checkTruncateLength`; `StageShape` / `ShapedStage` carry
 * a stage's layer range), `createOrtStage` (any onnxruntime package passed in
 * as a component; a `StageCache` keeps built stages, keyed by `stageDescription`), `uniformPartition(layers, k)`, `generate(pipeline, request)` (the in-order
 * pipeline loop; `logprobs` asks the last stage for temperature-1 log-probabilities;
 * `candidatesNeeded` says how many candidates its draw asks the last stage for), `Sampler`
 * (greedy / temperature / top-k / top-p with a seed, and OpenAI's frequency / presence penalties
 * within the top-k, from top-k logits).
 *
 * L5
 * - `mesh/`: control protocol with the server (`parseJoinRequest`, `PlanMessage`, ...),
 *   `RemoteStage` (coordinator side) and `createStageHost` (worker side) run steps across peers;
 *   a `StageChain` makes one RemoteStage of several r=1 peers that forward hidden states to each other;
 *   `ReplicatedStage` votes among the replicas of one stage; `FingerprintingStage`; worker node
 *   (`startWorkerNode`), whose membership is a `ControlSession`: it rejoins through the next of
 *   its servers when one drops it, keeping its identity, stage and peer connections.
 * - `placement/`: `planPlacement`, `PlanCache`, `planBenchmark`, `stageMemoryBytes`.
 */
export * from './base/rng.js'
export * from './base/top-k-logits.js'
export * from './engine/generate.js'
export * from './engine/inference-backend.js'
export * from './engine/ort-stage.js'
export * from './engine/partition.js'
export * from './engine/sampler.js'
export * from './engine/stage-cache.js'
export * from './engine/stage-shape.js'
export * from './errors.js'
export { ByteCursor } from './formats/byte-cursor.js'
export * from './formats/ggml-dequant.js'
export * from './formats/ggml-types.js'
export * from './formats/gguf-hparams.js'
export * from './formats/gguf-metadata.js'
export * from './formats/gguf-model.js'
export * from './formats/gguf-reader.js'
export * from './formats/gguf-tensor.js'
export * from './formats/gguf-tokenizer.js'
export * from './formats/hf-checkpoint.js'
export * from './formats/import-source.js'
export * from './formats/llama2c-checkpoint.js'
export * from './formats/llama2c-tokenizer.js'
export * from './formats/spm-tokenizer-json.js'
export * from './identity/base64url.js'
export * from './identity/join-proof.js'
export * from './identity/peer-identity.js'
export * from './identity/step-signature.js'
export * from './mesh/control-client.js'
export * from './mesh/control-protocol.js'
export * from './mesh/control-session.js'
export * from './mesh/fingerprinting-stage.js'
export type * from './mesh/health-report.js'
export * from './mesh/layer-benchmark.js'
export * from './mesh/peer-links.js'
export * from './mesh/remote-stage.js'
export * from './mesh/replicated-stage.js'
export type { StageChain } from './mesh/stage-chain.js'
export * from './mesh/stage-host.js'
export type { StageLinks } from './mesh/step-forwarder.js'
export * from './mesh/worker-node.js'
export * from './model/architecture.js'
export * from './model/model-config.js'
export * from './model/model-config-json.js'
export * from './model/parse-model-config.js'
export * from './model/reference-model.js'
export * from './model/rope.js'
export * from './model/rope-scaling.js'
export * from './model/synthetic.js'
export * from './model/validate-model-config.js'
export * from './model/weight-names.js'
export type { Int4Compute } from './onnx/matmul-nbits.js'
export * from './onnx/onnx-graph.js'
export * from './onnx/stage-graph.js'
export * from './onnx/stage-io.js'
export type { PeerBackend, PeerCapacity } from './placement/peer-capacity.js'
export type { PlacementOptions, PlacementStrategy } from './placement/placement-options.js'
export type { Plan, PlanStage as PlacementStage } from './placement/plan.js'
export { type PlanBenchmarkResult, planBenchmark } from './placement/plan-benchmark.js'
export { PlanCache } from './placement/plan-cache.js'
export { planPlacement } from './placement/plan-placement.js'
export { stageMemoryBytes } from './placement/stage-memory.js'
export * from './quant/int4.js'
export * from './quant/synthetic-weights.js'
export * from './quant/weight-encoding.js'
export * from './remote/http-source.js'
export * from './remote/remote-model.js'
export * from './tokenizers/byte-tokenizer.js'
export * from './tokenizers/chat-template.js'
export * from './tokenizers/hf-tokenizer.js'
export * from './tokenizers/stop-tokens.js'
export * from './tokenizers/tokenizer.js'
export * from './transport/memory-transport.js'
export * from './transport/message-connection.js'
export * from './transport/transport.js'
export * from './transport/webrtc-transport.js'
export * from './verify/calibration.js'
export * from './verify/calibration-bounds.js'
export * from './verify/calibration-reference.js'
export * from './verify/comparator-stats.js'
export * from './verify/compare-hidden.js'
export * from './verify/fingerprint.js'
export {
  decodeFingerprint,
  encodeFingerprint,
  FINGERPRINT_VERSION,
  fingerprintByteLength,
  MAX_FINGERPRINT_BYTES as MAX_HIDDEN_FINGERPRINT_BYTES,
} from './verify/fingerprint-codec.js'
export * from './verify/reputation.js'
export * from './verify/token-rows.js'
export * from './verify/tolerance.js'
export * from './verify/vote.js'
export * from './weights/byte-source.js'
export * from './weights/float16.js'
export * from './weights/safetensors.js'
export * from './weights/safetensors-index.js'
export * from './weights/sharded-safetensors.js'
export * from './weights/tensor.js'
export * from './weights/weight-provider.js'
export * from './wire/backpressure.js'
export * from './wire/frame.js'
export * from './wire/hidden-dtype.js'
export * from './wire/messages.js'
export * from './wire/reassembler.js'
