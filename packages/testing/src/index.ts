/**
 * @butterfly/testing: test code the workspaces' suites share. Private, source-only (vitest and
 * `tsc -p tsconfig.test.json` read it from src/; `tsc -b` never builds it), and imported only by
 * tests: `.dependency-cruiser.cjs` keeps every src/ folder off it.
 *
 * This entry needs only `@butterfly/core` (and vitest), so core's own tests can use it:
 *
 * Seeded randomness
 * - `mulberry32(seed)`: the one seeded generator of the test suites, uniform in [0, 1).
 *
 * Foreign model formats, written independently of the import code
 * - llama2.c and Hugging Face (format-writers): `knownWeights(dims, seed, shared)`,
 *   `llama2cModelBin`, `tokenizerBin`, `testVocab`, `sentencepieceSpelling`, `hfPermute`,
 *   `hfTensors`, `hfConfigJson`.
 * - Any ModelConfig: `seededWeights(config, seed)`, `hfModelFiles(config, weights)` (config.json,
 *   model.safetensors), `ggufModelFile(config, weights, opts)` (the GGUF llama.cpp's converter
 *   writes for that family), `metaPermute`, `llama3RopeFreqs`, `paddedTestVocab`.
 * - GGUF (gguf-writer): `writeGguf`, `ggufLlamaFile`, `GGML` type ids, `quantizeQ4_0`,
 *   `quantizeQ8_0`, `ggmlBytes`.
 * - `testDims(vocabSize)`, `readAll(source)` (import-helpers).
 * - `relativeError(actual, expected)`, `argmax(values)`: how the suites compare numerics.
 *
 * Reference implementations
 * - `Llama2cRunner`, `Llama2cTokenizerRef`, `llama2cGreedy`: a float64 transcription
 *   of llama2.c's run.c (forward pass, tokenizer encode/decode).
 *
 * Suites and stages
 * - `FAMILY_CONFIGS`: one small config per model family, its traits switched on.
 * - `runTransportCompliance(name, makePair)`: the contract every `Transport` must meet.
 * - `FaultyStage` (`FaultMode`, `FaultPhase`, `FaultOptions`): a misbehaving replica around a real
 *   stage, patient if asked (honest until trusted, rare lies, collusion, one phase only);
 *   `FaultOptionsError` (ERR_FAULT_OPTIONS).
 * - `DelegatingStage`: forwards everything to an inner stage; extend it to change one behaviour.
 *
 * Node-only helpers (processes, the test hub, the faulty worker backend; they load
 * `@butterfly/node-platform`) are in `@butterfly/testing/node` (./node.ts).
 */
export * from './delegating-stage.js'
export * from './errors.js'
export * from './family-configs.js'
export * from './faulty-stage.js'
export * from './format-writers.js'
export * from './gguf-model-writer.js'
export * from './gguf-writer.js'
export * from './hf-model-writer.js'
export * from './import-helpers.js'
export * from './llama2c-reference.js'
export * from './numerics.js'
export * from './rng.js'
export * from './transport-compliance.js'
