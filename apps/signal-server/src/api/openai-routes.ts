import { randomBytes, randomInt } from 'node:crypto'
import type { FinishReason, GenerateRequest, StepProvenance } from '@butterfly/core'
import { ButterflyError } from '@butterfly/core'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ApiObserver, CompletionBackend, ServedModel } from '../gateway/served-model.js'
import {
  ApiError,
  type CompletionRequest,
  chatPrompt,
  parseChatRequest,
  parseCompletionRequest,
} from './openai-request.js'
import { StopMatcher } from './stop-matcher.js'

export interface OpenAiRoutesInit {
  readonly backend: CompletionBackend
  /** When set, /v1 requires `Authorization: Bearer <apiToken>`. */
  readonly apiToken?: string
  readonly observer?: ApiObserver
}

type Kind = 'chat' | 'completion'

/** GET /v1/models, POST /v1/chat/completions and POST /v1/completions (SSE with stream: true). */
export function registerOpenAiRoutes(app: FastifyInstance, init: OpenAiRoutesInit): void {
  const { backend, observer } = init
  app.addHook('onRequest', async (req, reply) => {
    if (!req.url.startsWith('/v1/') || init.apiToken === undefined) return
    if (req.headers.authorization !== `Bearer ${init.apiToken}`) {
      const err = new ApiError(401, 'invalid_api_key', 'missing or wrong bearer token')
      return reply.code(401).send(err.body())
    }
  })
  app.get('/v1/models', async () => ({
    object: 'list',
    data: backend
      .models()
      .map((m) => ({ id: m.id, object: 'model', created: m.created, owned_by: 'butterfly' })),
  }))
  const handler = (kind: Kind) => async (req: FastifyRequest, reply: FastifyReply) => {
    const started = performance.now()
    const route = kind === 'chat' ? '/v1/chat/completions' : '/v1/completions'
    try {
      await complete(kind, req, reply, backend, observer)
    } catch (err) {
      const e = toApiError(err)
      if (e.status === 429) {
        reply.header('retry-after', String(e.retryAfterSeconds ?? 1))
        // Label by the resolved mesh only: a client-chosen string must not mint new series.
        const mesh = backend.find(String((req.body as { model?: unknown })?.model ?? ''))?.mesh
        if (mesh !== undefined) observer?.onRejected?.(mesh, 'queue_full')
      }
      if (reply.raw.headersSent) {
        reply.raw.end(`data: ${JSON.stringify(e.body())}\n\n`)
      } else {
        await reply.code(e.status).send(e.body())
      }
    } finally {
      observer?.onRequest?.(route, reply.raw.statusCode, (performance.now() - started) / 1000)
    }
  }
  app.post('/v1/chat/completions', handler('chat'))
  app.post('/v1/completions', handler('completion'))
}

async function complete(
  kind: Kind,
  req: FastifyRequest,
  reply: FastifyReply,
  backend: CompletionBackend,
  observer: ApiObserver | undefined,
): Promise<void> {
  const request = kind === 'chat' ? parseChatRequest(req.body) : parseCompletionRequest(req.body)
  const model = backend.find(request.model)
  if (model === undefined) {
    throw new ApiError(404, 'model_not_found', `the model '${request.model}' does not exist`, 'model')
  }
  const text = request.messages !== undefined ? chatPrompt(request.messages) : (request.prompt ?? '')
  const promptIds = model.tokenizer.encode(text, { addBos: true })
  if (promptIds.length === 0)
    throw new ApiError(400, 'invalid_request_error', 'the prompt is empty', 'prompt')
  const room = model.maxContext - promptIds.length
  if (room < 1) {
    throw new ApiError(
      400,
      'context_length_exceeded',
      `the prompt is ${promptIds.length} tokens; the model's context is ${model.maxContext}`,
      'messages',
    )
  }
  const maxTokens = Math.min(request.maxTokens ?? room, room)
  const abort = new AbortController()
  const onClose = () => abort.abort(new ButterflyError('ERR_ABORTED', 'client went away'))
  reply.raw.on('close', onClose)
  const release = await model.admission.acquire(abort.signal)
  try {
    const gen: GenerateRequest = {
      promptIds,
      maxTokens,
      sampling: {
        temperature: request.temperature,
        seed: request.seed ?? randomInt(0, 2 ** 31),
        ...(request.topP === undefined ? {} : { topP: request.topP }),
      },
      ...(model.tokenizer.eosTokenId === undefined ? {} : { stopTokenIds: [model.tokenizer.eosTokenId] }),
    }
    const out = new Output(kind, model, request, reply)
    const decoder = model.tokenizer.createStreamDecoder()
    const stops = new StopMatcher(request.stop)
    const stream = model.generate(gen, abort.signal)
    let finish: FinishReason | 'stop' = 'length'
    let completion = 0
    for (;;) {
      const next = await stream.next()
      if (next.done) {
        finish = next.value.finishReason === 'context' ? 'length' : next.value.finishReason
        out.text(stops.push(decoder.flush()) + stops.flush())
        break
      }
      completion++
      out.token(next.value.provenance)
      out.text(stops.push(decoder.push(next.value.id)))
      if (stops.stopped) {
        finish = 'stop'
        await stream.return(undefined as never)
        break
      }
    }
    observer?.onTokens?.(model.mesh, promptIds.length, completion)
    out.finish(finish, {
      prompt_tokens: promptIds.length,
      completion_tokens: completion,
      total_tokens: promptIds.length + completion,
    })
  } finally {
    release()
    reply.raw.off('close', onClose)
  }
}

/** Writes one response, either as SSE chunks or as one JSON body at the end. */
class Output {
  private readonly id: string
  private readonly created = Math.floor(Date.now() / 1000)
  private buffered = ''
  private started = false
  /** Per token since the last chunk, who computed each stage's step (a Butterfly extension). */
  private pending: Array<{ stages: Array<StepProvenance | null> }> = []

  constructor(
    private readonly kind: Kind,
    private readonly model: ServedModel,
    private readonly request: CompletionRequest,
    private readonly reply: FastifyReply,
  ) {
    this.id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`
  }

  /** Notes a generated token's provenance; it rides on the next chunk sent. */
  token(provenance: ReadonlyArray<StepProvenance | undefined> | undefined): void {
    if (this.request.stream && provenance !== undefined) {
      this.pending.push({ stages: provenance.map((p) => p ?? null) })
    }
  }

  text(piece: string): void {
    if (piece === '') return
    if (!this.request.stream) {
      this.buffered += piece
      return
    }
    this.open()
    this.send(this.chunk(this.kind === 'chat' ? { content: piece } : piece, null))
  }

  finish(reason: string, usage: Record<string, number>): void {
    if (!this.request.stream) {
      const choice =
        this.kind === 'chat'
          ? {
              index: 0,
              message: { role: 'assistant', content: this.buffered },
              logprobs: null,
              finish_reason: reason,
            }
          : { index: 0, text: this.buffered, logprobs: null, finish_reason: reason }
      void this.reply.code(200).send({
        id: this.id,
        object: this.kind === 'chat' ? 'chat.completion' : 'text_completion',
        created: this.created,
        model: this.model.id,
        choices: [choice],
        usage,
      })
      return
    }
    this.open()
    this.send(this.chunk(this.kind === 'chat' ? {} : '', reason))
    if (this.request.includeUsage) this.send({ ...this.chunk({}, null), choices: [], usage })
    this.reply.raw.end('data: [DONE]\n\n')
  }

  private open(): void {
    if (this.started) return
    this.started = true
    this.reply.hijack()
    this.reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    })
    if (this.kind === 'chat') this.send(this.chunk({ role: 'assistant', content: '' }, null))
  }

  private chunk(delta: Record<string, string> | string, finish: string | null): Record<string, unknown> {
    const choice =
      this.kind === 'chat'
        ? { index: 0, delta, logprobs: null, finish_reason: finish }
        : { index: 0, text: delta, logprobs: null, finish_reason: finish }
    return {
      id: this.id,
      object: this.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
      created: this.created,
      model: this.model.id,
      choices: [choice],
    }
  }

  private send(payload: Record<string, unknown>): void {
    // Clients that do not know the field ignore it, as OpenAI's own SDKs do.
    const body =
      this.pending.length > 0 && Array.isArray(payload.choices) && payload.choices.length > 0
        ? { ...payload, butterfly: { tokens: this.pending } }
        : payload
    if (body !== payload) this.pending = []
    this.reply.raw.write(`data: ${JSON.stringify(body)}\n\n`)
  }
}

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err
  if (err instanceof ButterflyError) {
    const status = err.code === 'ERR_NO_PLAN' || err.code === 'ERR_STEP_TIMEOUT' ? 503 : 500
    return new ApiError(status, err.code, err.message)
  }
  return new ApiError(500, 'internal_error', 'the server failed to complete the request')
}
