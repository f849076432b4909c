import {
  DEFAULT_TOP_K,
  encodeChatPrompt,
  eosTokenIdsOf,
  generate,
  type Int4Compute,
  stopTokenIdsOf,
} from '@butterfly/core'
import {
  cacheDir,
  createLocalPipeline,
  createNodeBackend,
  downloadOptions,
  loadModel,
  resolveModelDir,
} from '@butterfly/node-platform'
import { type StageCacheFlags, withStageCache } from './stage-cache-options.js'

export interface GenerateOptions extends StageCacheFlags {
  readonly model: string
  readonly prompt: string
  readonly maxTokens: number
  readonly temperature: number
  readonly topP?: number
  readonly topK?: number
  readonly seed: number
  readonly stages: number
  readonly ids: boolean
  readonly threads?: number
  /** int4 models: how MatMulNBits multiply (default fp32). */
  readonly int4Compute?: Int4Compute
  /** Hub for hf: models; default $HF_ENDPOINT, else https://huggingface.co. */
  readonly hfEndpoint?: string
}

/** `butterfly-worker generate`: the model cut into K stages in this process, streamed to `out`. */
export async function runGenerate(opts: GenerateOptions, out: NodeJS.WritableStream, signal?: AbortSignal) {
  const dir = await resolveModelDir(opts.model, cacheDir(), downloadOptions(opts.hfEndpoint, signal))
  const model = await loadModel(dir)
  const backend = createNodeBackend({
    ...(opts.threads === undefined ? {} : { threads: opts.threads }),
    ...(opts.int4Compute === undefined ? {} : { int4Compute: opts.int4Compute }),
    ...withStageCache(opts),
  })
  try {
    // The last stage returns at least as many candidates as --top-k asks to sample among.
    const topK = Math.max(DEFAULT_TOP_K, opts.topK ?? 0)
    const pipeline = await createLocalPipeline(model, backend, { stages: opts.stages, topK })
    try {
      const { tokenizer } = model
      // One BOS at most: a prompt rendered by a chat template may already start with it.
      const promptIds = encodeChatPrompt(tokenizer, opts.prompt)
      // The same stop ids the gateway uses, so a mesh and this command agree token for token.
      const stopTokenIds = stopTokenIdsOf({
        tokenizer,
        configEosIds: eosTokenIdsOf(model.config),
        generationEosIds: model.generationEosIds,
        template: model.chatTemplate,
      })
      const stream = generate(
        pipeline,
        {
          promptIds,
          maxTokens: opts.maxTokens,
          sampling: {
            temperature: opts.temperature,
            seed: opts.seed,
            ...(opts.topP === undefined ? {} : { topP: opts.topP }),
            ...(opts.topK === undefined ? {} : { topK: opts.topK }),
          },
          stopTokenIds,
        },
        signal,
      )
      const decoder = tokenizer.createStreamDecoder()
      let first = true
      for (;;) {
        const next = await stream.next()
        if (next.done) {
          out.write(opts.ids ? '\n' : `${decoder.flush()}\n`)
          return next.value
        }
        if (opts.ids) {
          out.write(`${first ? '' : ' '}${next.value.id}`)
          first = false
        } else {
          out.write(decoder.push(next.value.id))
        }
      }
    } finally {
      await pipeline.dispose()
    }
  } finally {
    await model.close()
  }
}
