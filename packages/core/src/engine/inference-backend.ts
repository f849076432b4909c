import type { RowTopK, TopKLogits } from '../base/top-k-logits.js'
import { GenerationError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import type { HiddenFingerprint } from '../verify/fingerprint.js'
import type { TokenRows } from '../verify/token-rows.js'
import type { WeightProvider } from '../weights/weight-provider.js'
import type { StageShape } from './stage-shape.js'

/** One step of one generation through one stage. */
export interface StageStepInput {
  /** Token ids of the new positions (first stage only). */
  readonly tokens?: readonly number[]
  /** Hidden states [seqLen * hiddenSize] from the previous stage (every stage but the first). */
  readonly hidden?: Float32Array
  readonly seqLen: number
  /** Number of positions this generation already has in the stage's KV cache. */
  readonly startPos: number
  /** Last stage: temperature the log-sum-exp is computed at (0 means greedy, computed at 1). */
  readonly temperature?: number
  /**
   * Result voting: answer with a fingerprint of the hidden output under this u32 challenge
   * instead of the output, and keep the output for fetchHidden. Only sessions with fetchHidden
   * honour it (FingerprintingStage adds both to any session).
   */
  readonly fingerprint?: { readonly challenge: number }
  /**
   * Last stage only: also return candidates for every position of the step (`rowTopk`), so a
   * replica replaying a window of w positions as one step answers for each of them.
   */
  readonly allRows?: boolean
  /**
   * Last stage: the coordinator needs at most this many candidates per position (one for a
   * greedy draw without penalties or log-probabilities), so the stage may answer with that many
   * of its top-k instead of all (limitCandidates). Stages that verify answers ask their peers for
   * every candidate regardless: votes compare candidate lists.
   */
  readonly candidates?: number
}

export interface StageStepOutput {
  /** Hidden states [seqLen * hiddenSize] for the next stage (every stage but the last). */
  readonly hidden?: Float32Array
  /** Candidates for sampling (last stage only). */
  readonly topk?: TopKLogits
  /** Full logits of the last position when the stage was built with emitLogits (tests). */
  readonly logits?: Float32Array
  /** In place of `hidden` when the input asked for a fingerprint. */
  readonly fingerprint?: HiddenFingerprint
  /** Last stage with allRows: the candidates of every position, the last one equal to `topk`. */
  readonly rowTopk?: RowTopK
  /** Last stage asked for a fingerprint: per position its top-2 candidates (verify/token-rows.ts). */
  readonly tokenRows?: TokenRows
}

export interface StageInit {
  readonly config: ModelConfig
  readonly layerStart: number
  readonly layerEnd: number
  readonly topK?: number
  readonly emitLogits?: boolean
}

/** Who computed a stage's latest step of a generation, and how the vote on it went. */
export interface StepProvenance {
  /** Peers whose answers were considered (one for an unreplicated stage). */
  readonly peers: readonly string[]
  /** Peers whose answers agreed with the accepted output (empty without a vote). */
  readonly agreeing: readonly string[]
  readonly disagreeing: readonly string[]
  /** Always false: no step is taken on trust any more (kept for older readers of /v1 provenance). */
  readonly spotChecked: boolean
  /** f + 1 peers confirmed the step (replicated stages); false never reaches a client. */
  readonly confirmed?: boolean
  /** 'vote': replicas answered the step together; 'window': a trusted leader ran ahead and replicas confirmed it afterwards. */
  readonly verification?: 'vote' | 'window'
}

/** What a window check found. */
export type ConfirmResult =
  | { readonly ok: true }
  /** The first position whose output was not confirmed: every stage must roll back to it. */
  | { readonly ok: false; readonly rollbackTo: number }

/**
 * A loaded pipeline stage. It owns the KV caches of its layers, one per generation; they
 * never leave it. Steps of one generation must arrive in order (startPos = positions so far).
 */
export interface StageSession extends StageShape {
  step(generationId: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput>
  /**
   * The full hidden output of the generation's latest fingerprinted step, which started at
   * `startPos`; fails (StageError ERR_HIDDEN_UNAVAILABLE) once a later step ran or it was freed.
   */
  fetchHidden?(generationId: string, startPos: number, signal?: AbortSignal): Promise<Float32Array>
  /**
   * Who computed (and who confirmed) the generation's step covering `position`, by default its
   * latest step (remote and replicated stages know).
   */
  provenance?(generationId: string, position?: number): StepProvenance | undefined
  /**
   * Windowed verification (replicated stages): how many of the generation's positions, from the
   * start, f + 1 peers have confirmed. A stage without it confirms every step as it runs.
   */
  confirmedLength?(generationId: string): number
  /** Whether enough unconfirmed positions are waiting that a window check is due. */
  confirmDue?(generationId: string): boolean
  /** Checks every step not yet confirmed; on a mismatch, names the position to roll back to. */
  confirm?(generationId: string, signal?: AbortSignal): Promise<ConfirmResult>
  /**
   * Rolls the generation back to its first `length` positions: KV rows at positions >= length are
   * dropped, so the next step must start at `length`. A no-op for an unknown generation or when it
   * holds no more than `length` positions. Steps of the generation still running finish first.
   * A `length` that is not a non-negative safe integer fails with GenerationError ERR_TRUNCATE
   * (checkTruncateLength).
   */
  truncate(generationId: string, length: number, signal?: AbortSignal): Promise<void>
  /** Frees the generation's KV cache; unknown ids are ignored. */
  endGeneration(generationId: string): void
  /** Generations currently holding a KV cache here. */
  readonly activeGenerations: number
  /** A batching stage's counters since it was created. */
  readonly batchStats?: BatchStats
  dispose(): Promise<void>
}

/** How a batching stage has run its steps (cumulative; compare two readings for a rate). */
export interface BatchStats {
  /** Runs of the stage graph. */
  readonly runs: number
  /** Steps answered (a step of a long prompt may take several runs). */
  readonly steps: number
  /** The most generations' steps one run computed. */
  readonly widest: number
  /** The most prompts' chunks one run computed (prompts of the same chunk size batch too). */
  readonly widestPrefill: number
  /** Padding rows computed in decode runs (slots between a run's generations). */
  readonly padded: number
  /** Slot swaps that gathered a decode run's generations onto consecutive slots. */
  readonly swaps: number
  /** Bytes the KV caches' buffers hold now (they shrink a few seconds after they stop being needed). */
  readonly kvBytes: number
}

/** Throws GenerationError ERR_TRUNCATE unless `length` is a non-negative safe integer. */
export function checkTruncateLength(generationId: string, length: number): void {
  if (!(Number.isSafeInteger(length) && length >= 0)) {
    throw new GenerationError(
      'ERR_TRUNCATE',
      `generation ${generationId}: cannot truncate to ${String(length)} positions (not a non-negative integer)`,
    )
  }
}

/** What node-worker (onnxruntime-node) and web (onnxruntime-web) each supply. */
export interface InferenceBackend {
  /** e.g. "onnxruntime-node/cpu". */
  readonly name: string
  createStage(init: StageInit, weights: WeightProvider, signal?: AbortSignal): Promise<StageSession>
}
