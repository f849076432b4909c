import type { GeneratedToken, GenerateRequest, GenerationResult, Tokenizer } from '@butterfly/core'
import type { Admission } from '../gateway/admission.js'

/** One served model, as the API sees it. */
export interface ServedModel {
  readonly id: string
  readonly mesh: string
  readonly created: number
  readonly tokenizer: Tokenizer
  readonly maxContext: number
  readonly admission: Admission
  /** Runs one generation through the mesh; fails with ApiError 503 when no plan can serve it. */
  generate(request: GenerateRequest, signal: AbortSignal): AsyncGenerator<GeneratedToken, GenerationResult>
}

/** What the API needs from the gateway. */
export interface CompletionBackend {
  models(): readonly ServedModel[]
  /** By model id or mesh name; undefined when unknown. */
  find(model: string): ServedModel | undefined
}

/** Hooks for metrics; all optional. */
export interface ApiObserver {
  onRequest?(route: string, status: number, seconds: number): void
  onTokens?(mesh: string, prompt: number, completion: number): void
  onRejected?(mesh: string, reason: string): void
}
