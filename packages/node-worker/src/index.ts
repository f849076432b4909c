/**
 * @butterfly/node-worker — the `butterfly-worker` CLI (bin/butterfly-worker.js): `generate`,
 * `import`, `join`. What it runs on (the onnxruntime-node backend, model store, hub download,
 * WebRTC, identity) is @butterfly/node-platform; this package is the program around it.
 *
 * - `main(argv)`, `buildCli()`: the CLI.
 * - `runGenerate(opts)`: `butterfly-worker generate`.
 * - `runImport(opts, out)`, `openImportSource(path, tokenizer)`, `writeImportedModel(...)`: convert
 *   llama2.c, GGUF and Hugging Face checkpoints into a model directory (streamed, atomic);
 *   `IMPORT_DTYPES`; `ImportError` (ERR_IMPORT_*).
 */

export { buildCli, main } from './cli.js'
export { type GenerateOptions, runGenerate } from './commands/generate-command.js'
export { ImportError, type ImportErrorCode } from './errors.js'
export { type ImportOptions, runImport } from './import/import-command.js'
export { type WriteOptions, type WriteResult, writeImportedModel } from './import/model-writer.js'
export { type OpenedSource, openImportSource } from './import/open-import-source.js'
export { IMPORT_DTYPES, type ImportDtype } from './import/output-dtype.js'
