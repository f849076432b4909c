import type {
  ChatTemplate,
  GeneratedToken,
  GenerateRequest,
  GenerationResult,
  Tokenizer,
} from '@butterfly/core'
import type { Admission } from './admission.js'

/** One model the gateway serves on one mesh: what the API's CompletionService drives. */
export interface ServedModel {
  readonly id: string
  readonly mesh: string
  readonly created: number
  readonly tokenizer: Tokenizer
  /** The model's own chat template; undefined means the documented fallback transcript. */
  readonly chatTemplate?: ChatTemplate | undefined
  /**
   * Every id a generation stops on (tokenizer EOS, config.json and generation_config.json eos
   * ids, the template's end-of-turn token); when absent, the tokenizer's EOS alone.
   */
  readonly stopTokenIds?: readonly number[] | undefined
  readonly maxContext: number
  readonly admission: Admission
  /** Runs one generation through the mesh; fails with GatewayError (ERR_MESH_NO_PLAN, ERR_PLAN_NOT_READY) when no plan can serve it. */
  generate(request: GenerateRequest, signal: AbortSignal): AsyncGenerator<GeneratedToken, GenerationResult>
}

/** The models the gateway serves. */
export interface CompletionBackend {
  models(): readonly ServedModel[]
  /** By model id or mesh name; undefined when unknown. */
  find(model: string): ServedModel | undefined
}
