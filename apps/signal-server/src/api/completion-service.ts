import { ButterflyError, type FinishReason, type GenerateRequest, type StepProvenance } from '@butterfly/core'
import { ANONYMOUS_CLIENT } from '../gateway/admission.js'
import type { CompletionBackend, ServedModel } from '../gateway/served-model.js'
import { ApiError } from '../http/http-errors.js'
import { chatPromptIds, rawPromptIds, stopTokenIdsOfModel } from './chat-prompt.js'
import { samplingParamsOf } from './openai-fields.js'
import type { CompletionRequest } from './openai-request.js'
import { StopMatcher } from './stop-matcher.js'
import { type TokenLogprob, tokenLogprob } from './token-logprobs.js'

/** Hooks for metrics; all optional. */
export interface ApiObserver {
  onRequest?(route: string, status: number, seconds: number): void
  onTokens?(mesh: string, prompt: number, completion: number): void
  onRejected?(mesh: string, reason: string): void
}

/** A validated request bound to its model: tokenized, within the context, not yet admitted. */
export interface PreparedCompletion {
  /** The served model the request named; responses carry its id. */
  readonly model: ServedModel
  readonly request: CompletionRequest
  readonly promptIds: readonly number[]
  /** The request's max tokens, cut to the room left in the context. */
  readonly maxTokens: number
}

/** Decoded text, with who computed the token it came from (when known). */
export interface CompletionPiece {
  readonly text: string
  readonly provenance?: ReadonlyArray<StepProvenance | undefined>
  /** Positions rolled back in this generation before the token was sent (never sent themselves). */
  readonly rolledBack?: number
  /** The generated token's log-probabilities, when the request asked for them. */
  readonly logprob?: TokenLogprob
}

export interface CompletionUsage {
  readonly prompt_tokens: number
  readonly completion_tokens: number
  readonly total_tokens: number
}

export interface CompletionResult {
  readonly finishReason: FinishReason | 'stop'
  readonly usage: CompletionUsage
}

/**
 * Runs completions on the gateway's models: finds the model, tokenizes the prompt, checks it
 * against the context, waits for admission, sets the stop tokens, decodes and applies stop
 * sequences. Speaks no HTTP: the OpenAI routes turn its pieces into SSE or JSON.
 */
export class CompletionService {
  constructor(
    private readonly backend: CompletionBackend,
    private readonly observer?: ApiObserver,
  ) {}

  /** The served models, for /v1/models. */
  models(): ReadonlyArray<{ readonly id: string; readonly created: number }> {
    return this.backend.models()
  }

  /**
   * Binds a request to its model and checks it fits. Throws ApiError: 404 model_not_found,
   * 400 for an empty prompt or context_length_exceeded.
   */
  prepare(request: CompletionRequest): PreparedCompletion {
    const model = this.model(request.model)
    // Chats through the model's template (see chatPromptIds); raw prompts get one BOS at most.
    const promptIds =
      request.messages !== undefined
        ? chatPromptIds(model, request.messages, new Date(), request.enableThinking)
        : rawPromptIds(model, request.prompt ?? '')
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
    return { model, request, promptIds, maxTokens }
  }

  /**
   * Waits for admission in `client`'s queue (GatewayError ERR_QUEUE_FULL when the queue is full,
   * ERR_QUEUE_TIMEOUT when the wait would be or was too long), then generates, handing each
   * decoded piece to `onPiece` as it comes; resolves once the generation ends. `client` is the
   * requester's key (clientKeyOf), never a secret.
   */
  async run(
    prepared: PreparedCompletion,
    signal: AbortSignal,
    onPiece: (piece: CompletionPiece) => void,
    client: string = ANONYMOUS_CLIENT,
  ): Promise<CompletionResult> {
    const { model, request, promptIds } = prepared
    const release = await model.admission.acquire(client, signal).catch((err: unknown) => {
      if (err instanceof ButterflyError && err.code === 'ERR_QUEUE_FULL') {
        this.observer?.onRejected?.(model.mesh, 'queue_full')
      } else if (err instanceof ButterflyError && err.code === 'ERR_QUEUE_TIMEOUT') {
        this.observer?.onRejected?.(model.mesh, 'queue_timeout')
      }
      throw err
    })
    try {
      const gen: GenerateRequest = {
        promptIds,
        maxTokens: prepared.maxTokens,
        sampling: samplingParamsOf(request, model.tokenizer.vocabSize),
        ...(request.logprobs === undefined ? {} : { logprobs: true }),
        stopTokenIds: stopTokenIdsOfModel(model),
      }
      const decoder = model.tokenizer.createStreamDecoder()
      const stops = new StopMatcher(request.stop)
      const stream = model.generate(gen, signal)
      let finish: FinishReason | 'stop' = 'length'
      let completion = 0
      let decodedChars = 0
      for (;;) {
        const next = await stream.next()
        if (next.done) {
          finish = next.value.finishReason === 'context' ? 'length' : next.value.finishReason
          onPiece({ text: stops.push(decoder.flush()) + stops.flush() })
          break
        }
        completion++
        const { id, topk, provenance, rolledBack } = next.value
        const logprob =
          request.logprobs === undefined
            ? undefined
            : tokenLogprob(model.tokenizer, id, topk, request.logprobs, decodedChars)
        const decoded = decoder.push(id)
        decodedChars += decoded.length
        const text = stops.push(decoded)
        onPiece({
          text,
          ...(provenance === undefined ? {} : { provenance }),
          ...(rolledBack === undefined ? {} : { rolledBack }),
          ...(logprob === undefined ? {} : { logprob }),
        })
        if (stops.stopped) {
          finish = 'stop'
          await stream.return(undefined as never)
          break
        }
      }
      this.observer?.onTokens?.(model.mesh, promptIds.length, completion)
      return {
        finishReason: finish,
        usage: {
          prompt_tokens: promptIds.length,
          completion_tokens: completion,
          total_tokens: promptIds.length + completion,
        },
      }
    } finally {
      release()
    }
  }

  private model(name: string): ServedModel {
    const model = this.backend.find(name)
    if (model === undefined) {
      throw new ApiError(
        404,
        'model_not_found',
        `the model '${name}' does not exist`,
        'model',
        undefined,
        'invalid_request_error',
      )
    }
    return model
  }
}
