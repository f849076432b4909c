import type {
  ModelConfig,
  PeerCapabilities,
  PlanMessage,
  PlanStage,
  SignalData,
  WireError,
} from '@butterfly/core'
import type { ModelIndex } from './model-index.js'

/** How the mesh reaches one member: a socket.io client or an in-process peer. */
export interface MemberSink {
  signal(from: string, data: SignalData): void
  plan(plan: PlanMessage): void
  peerLeft(peerId: string): void
  /** Cut the member off after the mesh dropped it (heartbeat timeout, mesh closed). */
  drop?(reason: PeerLeftReason): void
}

export interface LocalPeerHandlers {
  onSignal(from: string, data: SignalData): void
  /** Called with the current plan before addLocalPeer returns, then on every change. */
  onPlan(plan: PlanMessage): void
  onPeerLeft?(peerId: string): void
}

export interface LocalPeerHandle {
  readonly peerId: string
  /** Throws ControlError: ERR_CONTROL_INPUT (bad envelope), ERR_PEER_UNKNOWN, ERR_NOT_JOINED. */
  sendSignal(to: string, data: SignalData): void
  leave(): void
}

/** A peer that hosts layers, as /health shows it. */
export interface WorkerInfo extends PeerCapabilities {
  readonly id: string
}

/** Computes stages for the worker peers; throws (any ButterflyError) when none fits. */
export type Planner = (config: ModelConfig, workers: readonly WorkerInfo[]) => readonly PlanStage[]

/** 'moved': the same identity joined through another server of the cluster since. */
export type PeerLeftReason = 'leave' | 'disconnect' | 'timeout' | 'close' | 'revoked' | 'moved'

export interface MeshEvents {
  plan: [plan: PlanMessage]
  ready: [plan: PlanMessage]
  'peer-joined': [peerId: string]
  'peer-left': [peerId: string, reason: PeerLeftReason]
  close: []
}

export interface MeshInit {
  readonly name: string
  readonly model: ModelIndex
  readonly planner: Planner
  readonly meshToken?: string | undefined
  readonly heartbeatTimeoutMs: number
  readonly now?: () => number
  /** Called after every membership change with the number of worker peers. */
  readonly onMembership?: (workers: number) => void
  /** After every re-plan, with how long it took to compute and to push to every member. */
  readonly onReplan?: (timing: ReplanTiming) => void
  /** Peers currently excluded from plans. */
  readonly onExcluded?: (count: number) => void
  /** A peer was just excluded, and why ('outvoted', 'load-failed', 'slow-claim'). */
  readonly onExcludedPeer?: (peerId: string, reason: string) => void
  /** Errors thrown by member callbacks or event listeners; they never reach the sender. */
  readonly onError?: (err: unknown) => void
}

/** A member as the servers of a cluster describe it to each other (see mesh-cluster.ts). */
export interface MemberRecord {
  readonly id: string
  /** When it joined, on its server's clock: of two sessions of one identity, the later one wins. */
  readonly joinedAt: number
  /** Workers only; local peers (gateways) have none. */
  readonly capabilities?: PeerCapabilities | undefined
  /** A worker's Ed25519 key, base64url. */
  readonly publicKey?: string | undefined
}

/** What one gateway's votes said of a peer, so far. */
export interface PeerEvidence {
  readonly agreements: number
  readonly disagreements: number
}

/**
 * A gateway's votes, as the cluster shares them: each server publishes its own, and a peer whose
 * disagreements over all servers together pass the rule is excluded everywhere. A rare liar that
 * spreads its lies over several gateways thus meets the rule as if one gateway saw them all.
 */
export interface EvidenceSource {
  evidence(): ReadonlyMap<string, PeerEvidence>
  /** The rate rule: at least this many outcomes, and a disagreement rate above the maximum. */
  readonly minRateSamples: number
  readonly maxDisagreementRate: number
}

/**
 * How one mesh shares its state with the other servers of a cluster. Alone (no Redis) a server
 * always plans and tells nobody: LOCAL_ONLY.
 */
export interface MeshReplication {
  /** This server's id in the cluster. */
  readonly serverId: string
  /** Whether this server computes plans (it holds the planning lease). */
  readonly planning: boolean
  memberUp(record: MemberRecord): void
  memberDown(peerId: string): void
  planIssued(plan: PlanMessage, error: WireError | undefined): void
  excluded(peerId: string, reason: string): void
  stageReady(peerId: string, planVersion: number): void
  /** How to reach member `peerId`, connected to server `owner`. */
  remoteSink(owner: string, peerId: string): MemberSink
}

export const LOCAL_ONLY: MeshReplication = {
  serverId: 'local',
  planning: true,
  memberUp: () => {},
  memberDown: () => {},
  planIssued: () => {},
  excluded: () => {},
  stageReady: () => {},
  remoteSink: () => {
    throw new Error('a mesh without a cluster has no remote members')
  },
}

export interface ReplanTiming {
  /** Placement and the plan message, in seconds. */
  readonly planSeconds: number
  /** Handing the plan to every member's sink (socket.io encodes and queues it per socket). */
  readonly broadcastSeconds: number
  /** Members the plan went to. */
  readonly members: number
}

/** One member as the mesh keeps it. */
export interface Member {
  readonly id: string
  readonly sink: MemberSink
  /** Present for workers; local peers (the gateway) host no layers. */
  readonly capabilities: PeerCapabilities | undefined
  /** Workers' Ed25519 keys; their id is derived from it. */
  readonly publicKey: Uint8Array | undefined
  lastSeen: number
  /** The server holding its connection; undefined: this one. */
  readonly owner?: string | undefined
  readonly joinedAt: number
}
