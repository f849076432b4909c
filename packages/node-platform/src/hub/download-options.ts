import type { DownloadModelOptions } from './download-model.js'
import { terminalProgress } from './download-progress.js'

/**
 * What a CLI passes to resolveModelDir for hf:/https: models: the endpoint from its
 * --hf-endpoint flag (else $HF_ENDPOINT), a progress bar when stderr is a terminal, and
 * one-line notes (what is downloaded, resumed, retried) on stderr under `prefix`.
 */
export function downloadOptions(
  hfEndpoint: string | undefined,
  signal?: AbortSignal,
  prefix = 'butterfly-worker',
): DownloadModelOptions {
  return {
    endpoint: hfEndpoint,
    signal,
    progress: terminalProgress(process.stderr),
    log: (line) => process.stderr.write(`${prefix}: ${line}\n`),
  }
}
