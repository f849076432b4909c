import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { ReplanTiming } from './mesh-member.js'

/**
 * Prometheus metrics of one server. Each server owns its Registry (never prom-client's global
 * one), so several servers in one process — tests do this — never collide on metric names.
 */
export class ServerMetrics {
  readonly registry = new Registry()
  /** Worker peers currently joined, per mesh. */
  readonly peers: Gauge<'mesh'>
  /** Peers outvoted too often and given no layers, per mesh. */
  readonly peersExcluded: Gauge<'mesh'>
  /** Peers excluded from plans, by reason (outvoted, load-failed, slow-claim). */
  readonly exclusions: Counter<'mesh' | 'reason'>
  /** Joins refused, by code (ERR_JOIN_RATE, ERR_PEERS_PER_ADDRESS, ERR_JOIN_TOKEN_*, ...). */
  readonly joinsRefused: Counter<'code'>
  /** Plans computed because membership changed. */
  readonly replans: Counter<'mesh'>
  /** Computing one plan (placement and the plan message). */
  readonly planDuration: Histogram<'mesh'>
  /** Pushing one changed plan to every member. */
  readonly planBroadcastDuration: Histogram<'mesh'>
  /** Plan messages handed to members (one per member per re-plan). */
  readonly planMessages: Counter<'mesh'>
  /** Tokens processed by the gateway; kind is prompt or completion. */
  readonly tokens: Counter<'mesh' | 'kind'>
  readonly requestDuration: Histogram<'route' | 'status'>
  /** One pipeline step on one stage, as the gateway measured it. */
  readonly stageStep: Histogram<'mesh' | 'stage'>
  readonly bytesSent: Counter<'mesh'>
  readonly generationsRejected: Counter<'mesh' | 'reason'>
  /** Generations holding an admission slot, per mesh. */
  readonly generationsRunning: Gauge<'mesh'>
  /** Generations waiting for a slot, per mesh (all client keys together). */
  readonly generationsQueued: Gauge<'mesh'>
  /** Window checks that found a mismatch, per stage; each rolled the generation back. */
  readonly rollbacks: Counter<'mesh' | 'stage'>
  /** Positions those rollbacks discarded: computed, never shown to a client. */
  readonly rolledBackPositions: Counter<'mesh'>
  /** Tokens released after f + 1 peers of every stage confirmed them, by how (vote or window). */
  readonly tokensConfirmed: Counter<'mesh' | 'verification'>

  /** Records and messages from other servers (or Redis) refused, by code (ERR_CLUSTER_*). */
  readonly clusterRejected: Counter<'code'>
  /** Redis commands that failed (Redis down or restarting); each sync is retried next tick. */
  readonly clusterErrors: Counter

  constructor(prefix = 'butterfly_') {
    const registers = [this.registry]
    this.peers = new Gauge({
      name: `${prefix}peers`,
      help: 'Worker peers joined to the mesh',
      labelNames: ['mesh'],
      registers,
    })
    this.clusterRejected = new Counter({
      name: `${prefix}cluster_rejected_total`,
      help: 'Records and messages from other servers or Redis refused, by code',
      labelNames: ['code'],
      registers,
    })
    this.clusterErrors = new Counter({
      name: `${prefix}cluster_errors_total`,
      help: 'Redis commands that failed',
      registers,
    })
    this.peersExcluded = new Gauge({
      name: `${prefix}peers_excluded`,
      help: 'Peers excluded from plans after being outvoted',
      labelNames: ['mesh'],
      registers,
    })
    this.exclusions = new Counter({
      name: `${prefix}peer_exclusions_total`,
      help: 'Peers excluded from plans, by reason',
      labelNames: ['mesh', 'reason'],
      registers,
    })
    this.joinsRefused = new Counter({
      name: `${prefix}joins_refused_total`,
      help: 'Joins refused, by error code',
      labelNames: ['code'],
      registers,
    })
    this.replans = new Counter({
      name: `${prefix}replans_total`,
      help: 'Placement plans computed after a membership change',
      labelNames: ['mesh'],
      registers,
    })
    // Fine buckets below 50 ms: the placement goal is a plan in under 50 ms, and the load bench
    // reads its quantiles from these buckets.
    const planBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]
    this.planDuration = new Histogram({
      name: `${prefix}plan_seconds`,
      help: 'Time to compute one placement plan in seconds',
      labelNames: ['mesh'],
      buckets: planBuckets,
      registers,
    })
    this.planBroadcastDuration = new Histogram({
      name: `${prefix}plan_broadcast_seconds`,
      help: 'Time to hand one plan to every member of the mesh in seconds',
      labelNames: ['mesh'],
      buckets: planBuckets,
      registers,
    })
    this.planMessages = new Counter({
      name: `${prefix}plan_messages_total`,
      help: 'Plan messages sent to members (one per member per plan)',
      labelNames: ['mesh'],
      registers,
    })
    this.tokens = new Counter({
      name: `${prefix}tokens_total`,
      help: 'Tokens processed, by kind (prompt or completion)',
      labelNames: ['mesh', 'kind'],
      registers,
    })
    this.requestDuration = new Histogram({
      name: `${prefix}request_duration_seconds`,
      help: 'API request duration in seconds',
      labelNames: ['route', 'status'],
      buckets: [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    })
    this.stageStep = new Histogram({
      name: `${prefix}stage_step_seconds`,
      help: 'Duration of one pipeline step on one stage in seconds',
      labelNames: ['mesh', 'stage'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    })
    this.bytesSent = new Counter({
      name: `${prefix}bytes_sent_total`,
      help: 'Bytes the gateway sent to mesh peers',
      labelNames: ['mesh'],
      registers,
    })
    this.rollbacks = new Counter({
      name: `${prefix}rollbacks_total`,
      help: 'Window checks that found a mismatch and rolled the generation back, per stage',
      labelNames: ['mesh', 'stage'],
      registers,
    })
    this.rolledBackPositions = new Counter({
      name: `${prefix}rolled_back_positions_total`,
      help: 'Positions discarded by rollbacks (never shown to a client)',
      labelNames: ['mesh'],
      registers,
    })
    this.tokensConfirmed = new Counter({
      name: `${prefix}tokens_confirmed_total`,
      help: 'Tokens released once f + 1 peers of every stage confirmed them, by verification kind',
      labelNames: ['mesh', 'verification'],
      registers,
    })
    this.generationsRejected = new Counter({
      name: `${prefix}generations_rejected_total`,
      help: 'Generation requests refused, by reason',
      labelNames: ['mesh', 'reason'],
      registers,
    })
    this.generationsRunning = new Gauge({
      name: `${prefix}generations_running`,
      help: 'Generations admitted and running on the mesh',
      labelNames: ['mesh'],
      registers,
    })
    this.generationsQueued = new Gauge({
      name: `${prefix}generations_queued`,
      help: 'Generations waiting for admission on the mesh',
      labelNames: ['mesh'],
      registers,
    })
  }

  /** Records one re-plan of `mesh`. */
  replanned(mesh: string, timing: ReplanTiming): void {
    this.replans.inc({ mesh })
    this.planDuration.observe({ mesh }, timing.planSeconds)
    // A plan that did not change is sent to nobody: no broadcast to time.
    if (timing.members > 0) this.planBroadcastDuration.observe({ mesh }, timing.broadcastSeconds)
    this.planMessages.inc({ mesh }, timing.members)
  }

  /** The Prometheus text exposition of every metric. */
  text(): Promise<string> {
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }
}
