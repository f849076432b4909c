import {
  type ChatTemplate,
  GatewayError,
  type GeneratedToken,
  type GenerateRequest,
  type GenerationResult,
  generate,
  type Pipeline,
  type PlanMessage,
  ReputationBook,
  stagePeers,
  type Tokenizer,
  type VerificationHealth,
  type WebRtcTransport,
} from '@butterfly/core'
import { evidenceFromBook } from '../control/cluster-evidence.js'
import type { LocalPeerHandle } from '../control/mesh.js'
import { nextReadyPlan, supersededSignal } from '../control/mesh-plan.js'
import type { Admission } from './admission.js'
import { SlowClaimCheck } from './claim-check.js'
import { createGatewayTransport } from './gateway-transport.js'
import { newGenerationId } from './generation-id.js'
import { LinkProber, type LinkStat } from './link-prober.js'
import { type MeshGatewayComponents, type MeshGatewayInit, meshAdmission } from './mesh-gateway-options.js'
import { type PipelineLeaseStats, PipelineLeases } from './pipeline-leases.js'
import { type BuiltPipeline, planPipeline } from './plan-stage.js'
import { meshCalibrator } from './replicated-stage-factory.js'
import type { ServedModel } from './served-model.js'
import type { StageCalibrator } from './stage-calibrator.js'
import { VerificationTally } from './verification-tally.js'
import { WireMeter } from './wire-meter.js'
import { WorkerDialer } from './worker-dialer.js'

export type { MeshGatewayComponents, MeshGatewayInit }

interface Ready extends BuiltPipeline {
  readonly version: number
}

/**
 * The coordinator inside the server for one mesh: an in-process mesh member that dials the
 * workers of every ready plan over WebRTC and drives generations through them. A
 * generation keeps the pipeline it started on, so a re-plan never mixes stages.
 */
export class MeshGateway implements ServedModel {
  readonly id: string
  readonly mesh: string
  readonly created = Math.floor(Date.now() / 1000)
  readonly tokenizer: Tokenizer
  readonly chatTemplate: ChatTemplate | undefined
  readonly stopTokenIds: readonly number[] | undefined
  readonly maxContext: number
  readonly admission: Admission
  private readonly peer: LocalPeerHandle
  private readonly transport: WebRtcTransport
  private readonly dialer: WorkerDialer
  /** Pipelines and the generations on them; `current` is the one new generations start on. */
  private readonly leases = new PipelineLeases<Ready>((err) =>
    this.components.log?.(`mesh ${this.mesh}: a retired stage failed to dispose: ${String(err)}`),
  )
  private building: Promise<void> = Promise.resolve()
  private lastError: string | undefined
  /** Agreements, disagreements and timeouts of every peer this gateway has voted on. */
  readonly reputation: ReputationBook
  private readonly calibrator: StageCalibrator
  private readonly links = new LinkProber()
  /** Single-peer stages' measured steps against the throughput their peer claimed. */
  private readonly claims: SlowClaimCheck
  private generated = 0
  private relay: 'chain' | 'coordinator'
  private readonly wire = new WireMeter()
  private readonly verified: VerificationTally
  /** The current pipeline's peers' connections when it was built (see WorkerDialer.mark). */
  private readyMark: ReadonlyMap<string, number> = new Map()

  constructor(
    private readonly init: MeshGatewayInit,
    private readonly components: MeshGatewayComponents,
  ) {
    const { mesh } = components
    // Outvoted once by a quorum of its own class, at calibrated tolerances (which an honest peer
    // fails only through a comparator false positive, measured ~0 by the bench): flagged.
    this.reputation = new ReputationBook({ flagAfter: 1, ...init.reputation })
    mesh.provideEvidence(evidenceFromBook(this.reputation))
    this.verified = new VerificationTally(mesh.name, components.metrics)
    this.claims = new SlowClaimCheck(init.slowClaim)
    this.relay = init.relay ?? 'coordinator'
    this.id = mesh.modelId
    this.mesh = mesh.name
    this.tokenizer = components.tokenizer
    this.chatTemplate = components.chatTemplate
    this.stopTokenIds = components.stopTokenIds
    this.maxContext = mesh.config.maxContext
    this.admission = meshAdmission(init, components)
    const signalHandlers = new Set<(from: string, data: Readonly<Record<string, unknown>>) => void>()
    this.peer = mesh.addLocalPeer(mesh.localPeerId('gateway'), {
      onSignal: (from, data) => {
        for (const h of signalHandlers) h(from, data)
      },
      onPlan: (plan) => this.onPlan(plan),
      onPeerLeft: (id) => this.dropPeer(id),
    })
    this.transport = createGatewayTransport(() => this.peer, signalHandlers, components)
    this.dialer = new WorkerDialer(this.transport, (peerId, conn) => {
      this.links.watch(peerId, conn)
      this.wire.watch(conn)
    })
    this.calibrator = meshCalibrator(mesh, this.reputation, components.log)
    mesh.on('ready', (plan) => {
      this.building = this.building.then(() => this.connect(plan))
    })
    if (mesh.isReady()) this.building = this.connect(mesh.plan)
  }

  private get ready(): Ready | undefined {
    return this.leases.current
  }

  /** Whether every connection the current pipeline was built on is still the one it used. */
  private get fresh(): boolean {
    return !this.dialer.closedSince(this.readyMark)
  }

  async *generate(
    request: GenerateRequest,
    signal: AbortSignal,
  ): AsyncGenerator<GeneratedToken, GenerationResult> {
    const ready = await this.readyPipeline(signal)
    // Every pipeline this generation runs on stays undisposed until it ends (see PipelineLeases).
    const releases = [this.leases.acquire(ready.pipeline)]
    const hold = (pipeline: Pipeline): Pipeline => {
      releases.push(this.leases.acquire(pipeline))
      return pipeline
    }
    let version = ready.version
    let running = ready.pipeline
    // A peer that dies mid-generation: wait for the re-plan, then continue on the new pipeline.
    // One that came back with a new session under the same plan: continue on a rebuilt pipeline.
    const recover = async (err: unknown): Promise<Pipeline | undefined> => {
      // Workers that cannot reach each other still reach the coordinator: relay through it.
      const code = (err as { code?: unknown })?.code
      const relayed =
        code === 'ERR_CHAIN_LINK'
          ? await this.relayPlan(version, 'a worker-to-worker link failed')
          : undefined
      if (relayed !== undefined) return hold(relayed)
      const next = await this.nextPipeline(version, signal, running).catch(() => undefined)
      if (next === undefined) return undefined
      version = next.version
      running = next.pipeline
      this.components.log?.(
        `mesh ${this.mesh}: a generation moved to plan ${next.version} and replays its tokens`,
      )
      return hold(next.pipeline)
    }
    // Ids from the same source as calibration's: a peer cannot tell one from the other.
    const id = request.generationId ?? newGenerationId()
    const tokens = generate(ready.pipeline, { ...request, generationId: id }, signal, { recover })
    let rolledBack = 0
    try {
      for (;;) {
        const next = await tokens.next()
        if (next.done === true) return next.value
        this.generated++
        rolledBack = this.verified.note(next.value, rolledBack)
        yield next.value
      }
    } finally {
      // A consumer that stops early (client gone) must still end the pipeline's generation.
      await tokens.return(undefined as never).catch(() => undefined)
      for (const release of releases) release()
      // Peers the votes flagged get no layers in the next plan.
      for (const p of this.reputation.snapshot().peers) if (p.flagged) this.components.mesh.exclude(p.peerId)
      for (const c of this.claims.flagged()) this.components.mesh.exclude(c.peerId, 'slow-claim')
    }
  }

  /** /health's verification section for this mesh. */
  verificationStats(): VerificationHealth {
    const replicated = this.components.mesh.plan.stages.some((s) => stagePeers(s).length > 1)
    return this.verified.snapshot(
      replicated ? (this.init.verification ?? 'windowed') : 'none',
      this.init.verifyWindow ?? 8,
    )
  }

  /** Frame bytes the gateway exchanged with this mesh's workers (benches: wire bytes per token). */
  wireBytes(): { sent: number; received: number } {
    return this.wire.totals()
  }

  /**
   * Switches how hidden states travel in plans without replicas, for generations from now on (the
   * benches compare both on the same workers). Resolves once the current plan is connected anew.
   */
  async setRelay(relay: 'chain' | 'coordinator'): Promise<void> {
    this.relay = relay
    const plan = this.components.mesh.plan
    this.building = this.building.then(() => this.connect(plan))
    await this.building
  }

  /** Moves plan `version`, when chained and current, onto the pipeline relayed through here. */
  private async relayPlan(version: number, why: string): Promise<Pipeline | undefined> {
    if (this.ready?.version !== version) return undefined
    // Already relayed (another generation got here first): the same pipeline.
    if (this.ready.relayed === undefined) return this.ready.pipeline
    const pipeline = await this.ready.relayed().catch(() => undefined)
    if (pipeline === undefined || this.ready?.version !== version) return undefined
    if (this.ready.relayed === undefined) return pipeline
    this.leases.adopt({ version, pipeline })
    this.components.log?.(`mesh ${this.mesh}: ${why}; plan ${version} relays`)
    return pipeline
  }

  /** Tokens generated on this mesh since the gateway started. */
  get tokensGenerated(): number {
    return this.generated
  }

  /** Round-trip times of the links to the workers this gateway has dialled. */
  linkStats(): LinkStat[] {
    return this.links.snapshot()
  }

  /**
   * The first connected pipeline of a plan newer than `after`; or of plan `after` itself rebuilt,
   * once it turned ready again (a peer came back under it with a new session) and `running`,
   * the pipeline that failed, is no longer the one its connections are.
   */
  private async nextPipeline(after: number, signal: AbortSignal, running?: Pipeline): Promise<Ready> {
    const { mesh } = this.components
    const wait = AbortSignal.any([signal, AbortSignal.timeout(this.init.planWaitMs ?? 30_000)])
    let readyAgain = false
    for (;;) {
      const plan = mesh.plan
      const usable = (r: Ready | undefined): r is Ready =>
        r !== undefined && r.version === plan.version && (r.version > after || r.pipeline !== running)
      if (usable(this.ready) && this.fresh) return this.ready
      if ((plan.version > after || (readyAgain && running !== undefined)) && mesh.isReady()) {
        this.building = this.building.then(() =>
          usable(this.ready) && this.fresh ? undefined : this.connect(plan),
        )
        await this.building
        if (usable(this.ready)) return this.ready
      }
      readyAgain = (await nextReadyPlan(mesh, mesh.name, wait)).version === after
    }
  }

  async close(): Promise<void> {
    this.links.close()
    this.peer.leave()
    this.dialer.closeAll()
    await this.transport.close()
  }

  private async readyPipeline(signal: AbortSignal): Promise<Ready> {
    const { mesh } = this.components
    if (this.ready && this.ready.version === mesh.plan.version && this.fresh) return this.ready
    if (mesh.plan.stages.length === 0) {
      const why = mesh.planError?.message ?? 'no worker has joined'
      throw new GatewayError('ERR_MESH_NO_PLAN', `mesh '${mesh.name}' cannot serve: ${why}`)
    }
    const wait = AbortSignal.any([signal, AbortSignal.timeout(this.init.planWaitMs ?? 30_000)])
    try {
      const plan = await mesh.waitForReadyPlan(wait)
      await this.building
      const current = () => this.ready?.version === plan.version && this.fresh
      if (!current()) {
        this.building = this.building.then(() => (current() ? undefined : this.connect(plan)))
        await this.building
      }
    } catch {
      signal.throwIfAborted()
    }
    if (this.ready && this.ready.version === mesh.plan.version) return this.ready
    throw new GatewayError(
      'ERR_PLAN_NOT_READY',
      `mesh '${mesh.name}' is loading its plan${this.lastError ? `: ${this.lastError}` : ''}`,
    )
  }

  /** What keeps pipelines alive: the tests check that replaced ones are disposed. */
  pipelineStats(): PipelineLeaseStats & { messageListeners: number } {
    return { ...this.leases.stats(), messageListeners: this.dialer.messageListeners() }
  }

  private onPlan(plan: PlanMessage): void {
    // addLocalPeer hands over the current plan from the constructor, before the dialer exists.
    if ((this.dialer as WorkerDialer | undefined) === undefined) return
    // Connections to peers that left the plan are closed; the rest are reused.
    const inPlan = new Set(plan.stages.flatMap(stagePeers))
    for (const id of this.dialer.peers()) if (!inPlan.has(id)) this.dropPeer(id)
  }

  private dropPeer(id: string): void {
    this.calibrator.forget(id)
    this.links.forget(id)
    this.dialer.drop(id)
  }

  /** Dials every stage of a ready plan; a failed dial is retried with a fresh connection. */
  private async connect(plan: PlanMessage, attempts = 3): Promise<void> {
    const { mesh, metrics } = this.components
    const superseded = supersededSignal(mesh, plan.version)
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (plan.version !== mesh.plan.version) break
      try {
        const config = mesh.config
        const parts = {
          mesh,
          connection: (peerId: string) => this.dialer.connection(peerId, superseded.signal),
          calibrator: this.calibrator,
          reputation: this.reputation,
          claims: this.claims,
          metrics,
          stepTimeoutMs: this.init.stepTimeoutMs ?? 60_000,
          verification: this.init.verification ?? 'windowed',
          window: this.init.verifyWindow ?? 8,
          hiddenDtype: this.init.wireDtype ?? 'fp32',
          // A chain slower than its peers' claims together is relayed, which times each peer.
          onSlowChain: () => void this.relayPlan(plan.version, 'its chain is slower than its peers claimed'),
        }
        const chained = this.relay === 'chain' ? this.peer.peerId : undefined
        const built = await planPipeline(parts, plan.stages, config.maxContext, chained)
        if (plan.version !== mesh.plan.version) {
          // Superseded while it was dialled: nobody will run on it.
          this.leases.retireBuilt(built)
          break
        }
        this.leases.adopt({ version: plan.version, ...built })
        this.readyMark = this.dialer.mark(plan.stages.flatMap(stagePeers))
        this.lastError = undefined
        this.components.log?.(
          `mesh ${mesh.name}: plan ${plan.version} connected (${plan.stages.length} stages${built.relayed ? ', chained' : ''})`,
        )
        break
      } catch (err) {
        this.lastError = (err as Error).message
        this.components.log?.(
          `mesh ${mesh.name}: plan ${plan.version}, attempt ${attempt}: cannot connect: ${this.lastError}`,
        )
      }
    }
    superseded.dispose()
  }
}
