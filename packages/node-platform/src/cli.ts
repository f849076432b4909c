/**
 * @butterfly/node-platform/cli — the CLI error wrapper alone, for programs that should not load
 * onnxruntime-node or node-datachannel just to start (butterfly-train).
 */

export { type CliMainOptions, reportCliError, runCliMain } from './cli/cli-main.js'
export { CliUsageError } from './errors.js'
