import type { TopKLogits } from '../../base/top-k-logits.js'
import type { ReputationBook } from '../../verify/reputation.js'
import type { ToleranceTable } from '../../verify/tolerance.js'
import type { Replica } from './replica-set.js'

/** How a ReplicatedStage is set up, what it is given, and what it counts. */
export interface ReplicatedStageInit {
  readonly layerStart: number
  readonly layerEnd: number
  readonly isFirst: boolean
  readonly isLast: boolean
  readonly hiddenSize: number
  /** Faults tolerated: each step goes to r = 2f + 1 replicas and needs f + 1 agreeing. */
  readonly f: number
  /** Most replies counted in one step when escalating after a failed vote; default (and minimum) 2f + 1. */
  readonly maxReplicas?: number
  /** Pipeline stage index, named in errors. */
  readonly stage: number
  /**
   * Ask all replicas but one for fingerprints instead of full hidden states (replicas whose
   * session has fetchHidden); default true.
   */
  readonly fingerprints?: boolean
  /** Per replica call (each replayed step too); none by default (RemoteStage has its own). */
  readonly stepTimeoutMs?: number
  /**
   * 'windowed' (default): once a peer has a clean record (the book's trustAfter agreements), it
   * leads decode steps alone and f other replicas confirm them afterwards, `window` positions at a
   * time, replayed as one merged step; other steps are voted by f + 1 replicas, more only when
   * they disagree. 'every-step': every step is voted by 2f + 1 replicas as it runs.
   */
  readonly verification?: 'windowed' | 'every-step'
  /** Unconfirmed positions after which a window check is due; default 8. */
  readonly window?: number
}

export interface ReplicatedStageComponents {
  readonly replicas: readonly Replica[]
  /** Asked when replicas fail or are flagged; they rebuild their KV cache by replay. */
  readonly spares?: readonly Replica[]
  readonly tolerances: ToleranceTable
  readonly reputation: ReputationBook
  /** Uniform in [0, 1), seeded: draws the leader among peers of equally clean record. */
  readonly rng: () => number
  /** The token the coordinator would pick from a top-k, without advancing its RNG; default argmax. */
  readonly sampleToken?: (topk: TopKLogits) => number
  /**
   * A fresh u32 fingerprint challenge per ask. It must be unpredictable to the replicas (a liar
   * that knew it could shape its lie around the sketch); default cryptographically random.
   */
  readonly challenge?: () => number
}

export interface ReplicationStats {
  steps: number
  /** Steps a trusted leader ran ahead alone, confirmed afterwards by a window check. */
  ahead: number
  /** Window checks run. */
  windows: number
  /** Window checks that found a mismatch, each followed by a rollback. */
  rollbacks: number
  /** Positions those rollbacks discarded (never shown to a client). */
  rolledBackPositions: number
  /** Steps that needed more than the first r replies. */
  escalations: number
  /** Earlier steps replayed into replicas that were behind. */
  replayedSteps: number
  /** Replica calls that threw or timed out. */
  failures: number
  /** Replies asked as fingerprints instead of full states. */
  fingerprints: number
  /** Full states fetched after a vote on fingerprints found no quorum. */
  fetches: number
}
