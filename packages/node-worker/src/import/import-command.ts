import cliProgress from 'cli-progress'
import { type WriteResult, writeImportedModel } from './model-writer.js'
import { openImportSource } from './open-import-source.js'
import { checkOutputDtype, type ImportDtype } from './output-dtype.js'

export interface ImportOptions {
  readonly source: string
  readonly out: string
  readonly tokenizer?: string
  readonly dtype: ImportDtype
  readonly force: boolean
}

const FORMAT_NAMES = { llama2c: 'llama2.c', gguf: 'GGUF', hf: 'Hugging Face' } as const

/**
 * `butterfly-worker import`: converts a llama2.c, GGUF or Hugging Face checkpoint into a model
 * directory every Butterfly loader reads. Shows a progress bar on a TTY and prints one summary
 * line to `out`.
 */
export async function runImport(
  opts: ImportOptions,
  out: NodeJS.WritableStream,
  signal?: AbortSignal,
): Promise<WriteResult> {
  checkOutputDtype(opts.dtype)
  const opened = await openImportSource(opts.source, opts.tokenizer)
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar(
        {
          format: 'importing [{bar}] {percentage}% {done}/{all} MB {tensor}',
          stream: process.stderr,
          clearOnComplete: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined
  const mb = (n: number) => (n / 1e6).toFixed(1)
  try {
    const total = opened.source.tensors.reduce((a, t) => a + t.sourceBytes, 0)
    bar?.start(total, 0, { done: mb(0), all: mb(total), tensor: '' })
    const result = await writeImportedModel(opened.source, opened.tokenizer, opts.out, {
      dtype: opts.dtype,
      force: opts.force,
      extraFiles: opened.chatFiles,
      ...(signal === undefined ? {} : { signal }),
      onProgress: (done, all, tensor) => bar?.update(done, { done: mb(done), all: mb(all), tensor }),
    })
    bar?.stop()
    const { config } = opened.source
    out.write(
      `imported ${FORMAT_NAMES[opened.source.format]} ${opts.source} -> ${result.dir}: ` +
        `${config.numLayers} layers, hidden ${config.hiddenSize}, vocab ${config.vocabSize}, ` +
        `${result.tensors} tensors as ${opts.dtype} (${mb(result.bytes)} MB)\n`,
    )
    return result
  } finally {
    bar?.stop()
    await opened.close()
  }
}
