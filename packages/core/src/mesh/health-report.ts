/**
 * The server's `GET /health` response, shared by the server (which builds it) and the web app
 * (which charts it). Types only: nothing here runs.
 */
import type { WireError } from '../errors.js'
import type { ReputationSnapshot } from '../verify/reputation.js'
import type { PlanMessage } from './control-protocol.js'

/** A peer that hosts layers, as /health shows it. */
export interface HealthPeer {
  readonly id: string
  readonly name: string
  readonly backend: string
  /** Numeric class (backend/precision): replicas vote within homogeneous classes. */
  readonly numericClass: string
  readonly memoryBytes: number
  readonly layerStepsPerSec: number
  /** Outvoted too often, or caught failing a claim: a member, but given no layers. */
  readonly excluded: boolean
  /**
   * Why, when excluded: 'outvoted' (the votes flagged it), 'calibration' (refused at calibration), 'load-failed' (it reported it could
   * not load its layers), 'slow-claim' (its steps ran far slower than the throughput it claimed).
   */
  readonly excludedReason?: string
}

/** The gateway's WebRTC link to one worker, pinged every 2 s over the step channel. */
export interface LinkStat {
  readonly peerId: string
  /** Median of the recent pings, in milliseconds. */
  readonly rttMs: number
  /** The newest ping's round trip. */
  readonly lastRttMs: number
  readonly samples: number
}

/** How the gateway verified what it sent: every token is confirmed by f + 1 peers of each stage. */
export interface VerificationHealth {
  /** 'windowed' or 'every-step' (replicated stages); 'none' with one peer per stage. */
  readonly mode: 'windowed' | 'every-step' | 'none'
  /** Unconfirmed positions after which a window check runs. */
  readonly window: number
  /** Tokens sent to clients, by how their steps were confirmed. */
  readonly tokensConfirmed: { readonly vote: number; readonly window: number; readonly unreplicated: number }
  /** Window checks that failed, and the positions the rollbacks discarded (never sent). */
  readonly rollbacks: number
  readonly rolledBackPositions: number
  /** The latest rollbacks, newest last (at most 20). */
  readonly recentRollbacks: ReadonlyArray<{ readonly at: string; readonly positions: number }>
}

export interface MeshHealth {
  readonly name: string
  readonly modelId: string
  readonly peers: readonly HealthPeer[]
  readonly plan: PlanMessage
  /** Why the plan has no stages. */
  readonly planError?: WireError
  /** Every stage of the plan has reported stage-ready. */
  readonly ready: boolean
  /** Votes per peer (agreements, disagreements, timeouts, flagged), from the gateway. */
  readonly reputation?: ReputationSnapshot
  /** Round-trip times of the gateway's links to the workers it has dialled. */
  readonly links: readonly LinkStat[]
  /** Tokens generated on this mesh since the server started (the web app charts its rate). */
  readonly tokensGenerated: number
  /** Per-token verification since the server started (a gateway serves the mesh). */
  readonly verification?: VerificationHealth
}

export interface HealthReport {
  readonly status: 'ok'
  readonly meshes: readonly MeshHealth[]
}
