import { createHash, randomBytes } from 'node:crypto'
import { ButterflyError, type StepProvenance } from '@butterfly/core'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { requireBearer } from '../http/auth.js'
import { toApiError } from '../http/http-errors.js'
import { clientKeyOf } from './client-key.js'
import type { ApiObserver, CompletionService, CompletionUsage } from './completion-service.js'
import { type CompletionRequest, parseChatRequest, parseCompletionRequest } from './openai-request.js'
import { chatLogprobEntry, completionLogprobs, type TokenLogprob } from './token-logprobs.js'

export interface OpenAiRoutesInit {
  readonly service: CompletionService
  /** When set, /v1 requires `Authorization: Bearer <apiToken>` (compared in constant time). */
  readonly apiToken?: string
  /** Request durations; the service reports tokens and rejections itself. */
  readonly observer?: ApiObserver
}

type Kind = 'chat' | 'completion'

/**
 * GET /v1/models, POST /v1/chat/completions and POST /v1/completions (SSE with stream: true):
 * parse the request, run it through the CompletionService, write the response.
 */
export function registerOpenAiRoutes(app: FastifyInstance, init: OpenAiRoutesInit): void {
  const { service, observer } = init
  const authorize = requireBearer(init.apiToken)
  app.addHook('onRequest', async (req, reply) => {
    if (req.url.startsWith('/v1/')) return authorize(req, reply)
    return undefined
  })
  app.get('/v1/models', async () => ({
    object: 'list',
    data: service
      .models()
      .map((m) => ({ id: m.id, object: 'model', created: m.created, owned_by: 'butterfly' })),
  }))
  const handler = (kind: Kind) => async (req: FastifyRequest, reply: FastifyReply) => {
    const started = performance.now()
    const route = kind === 'chat' ? '/v1/chat/completions' : '/v1/completions'
    try {
      await complete(kind, req, reply, service, init.apiToken)
    } catch (err) {
      const e = toApiError(err)
      if (e.status === 429) reply.header('retry-after', String(e.retryAfterSeconds ?? 1))
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
  service: CompletionService,
  apiToken: string | undefined,
): Promise<void> {
  const request = kind === 'chat' ? parseChatRequest(req.body) : parseCompletionRequest(req.body)
  const prepared = service.prepare(request)
  const abort = new AbortController()
  const onClose = () => abort.abort(new ButterflyError('ERR_ABORTED', 'client went away'))
  reply.raw.on('close', onClose)
  try {
    const out = new Output(kind, prepared.model.id, request, reply)
    const client = clientKeyOf(req.headers.authorization, req.ip, apiToken)
    const result = await service.run(
      prepared,
      abort.signal,
      (piece) => {
        out.token(piece.provenance, piece.logprob, piece.rolledBack)
        out.text(piece.text)
      },
      client,
    )
    out.finish(result.finishReason, result.usage)
  } finally {
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
  /** Log-probabilities of tokens not yet sent (all of them, without streaming). */
  private logprobs: TokenLogprob[] = []
  /** Identifies what computed the response (OpenAI's system_fingerprint): here, the model served. */
  private readonly fingerprint: string

  constructor(
    private readonly kind: Kind,
    private readonly modelId: string,
    private readonly request: CompletionRequest,
    private readonly reply: FastifyReply,
  ) {
    this.id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`
    this.fingerprint = `fp_${createHash('sha256').update(modelId).digest('hex').slice(0, 12)}`
  }

  /** Notes a generated token's provenance and log-probabilities; they ride on the next chunk sent. */
  token(
    provenance: ReadonlyArray<StepProvenance | undefined> | undefined,
    logprob: TokenLogprob | undefined,
    rolledBack?: number,
  ): void {
    if (this.request.stream && provenance !== undefined) {
      this.pending.push({
        stages: provenance.map((p) => p ?? null),
        ...(rolledBack === undefined ? {} : { rolledBack }),
      })
    }
    if (logprob !== undefined) this.logprobs.push(logprob)
  }

  /** The `logprobs` of a choice: the tokens noted since the last chunk, or null when not asked for. */
  private takeLogprobs(): Record<string, unknown> | null {
    if (this.request.logprobs === undefined) return null
    const tokens = this.logprobs
    this.logprobs = []
    return this.kind === 'chat'
      ? { content: tokens.map(chatLogprobEntry), refusal: null }
      : completionLogprobs(tokens)
  }

  text(piece: string): void {
    if (piece === '') return
    if (!this.request.stream) {
      this.buffered += piece
      return
    }
    this.open()
    this.send(this.chunk(this.kind === 'chat' ? { content: piece } : piece, null, true))
  }

  finish(reason: string, usage: CompletionUsage): void {
    if (!this.request.stream) {
      const choice =
        this.kind === 'chat'
          ? {
              index: 0,
              message: { role: 'assistant', content: this.buffered },
              logprobs: this.takeLogprobs(),
              finish_reason: reason,
            }
          : { index: 0, text: this.buffered, logprobs: this.takeLogprobs(), finish_reason: reason }
      void this.reply.code(200).send({
        id: this.id,
        object: this.kind === 'chat' ? 'chat.completion' : 'text_completion',
        created: this.created,
        model: this.modelId,
        system_fingerprint: this.fingerprint,
        choices: [choice],
        usage,
      })
      return
    }
    this.open()
    this.send(this.chunk(this.kind === 'chat' ? {} : '', reason, true))
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

  /** One SSE chunk; `withLogprobs` hands it the log-probabilities of the tokens noted since the last. */
  private chunk(
    delta: Record<string, string> | string,
    finish: string | null,
    withLogprobs = false,
  ): Record<string, unknown> {
    const logprobs = withLogprobs ? this.takeLogprobs() : null
    const choice =
      this.kind === 'chat'
        ? { index: 0, delta, logprobs, finish_reason: finish }
        : { index: 0, text: delta, logprobs, finish_reason: finish }
    return {
      id: this.id,
      object: this.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
      created: this.created,
      model: this.modelId,
      system_fingerprint: this.fingerprint,
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
