import { resolve } from 'node:path'
import {
  LIMITS,
  MAX_STAGE_REPLICAS,
  type ModelConfig,
  numericClassOf,
  type PeerCapacity,
  type PlacementOptions,
  PlanCache,
  type PlanStage,
  stageMemoryBytes,
} from '@butterfly/core'
import { ServerConfigError } from '../errors.js'
import { Mesh, type Planner } from './mesh.js'
import { indexModelDir, type ModelIndex } from './model-index.js'
import type { ServerMetrics } from './server-metrics.js'

export interface MeshSpec {
  /** Letters, digits, '.', '_' or '-', up to 64 characters. */
  readonly name: string
  /** An already resolved model directory (see resolveModelDir for `synthetic:NAME`). */
  readonly modelDir: string
  /** Peers must present this token to join; no token means the mesh is open. */
  readonly meshToken?: string | undefined
  /** Defaults to the directory's base name. */
  readonly modelId?: string | undefined
}

/**
 * Tokens of context a mesh serves when nobody says: real checkpoints declare up to 131,072
 * (Llama 3.x), and reserving KV cache for all of it on every stage would keep a 1B model
 * off any ordinary set of peers (548 MiB per Llama 3.2 1B layer).
 */
export const DEFAULT_SERVED_CONTEXT = 8192

export interface MeshRegistryOptions {
  readonly heartbeatTimeoutMs: number
  readonly planOptions?: PlacementOptions | undefined
  /** Caps every model's context (see DEFAULT_SERVED_CONTEXT). */
  readonly maxContext?: number | undefined
  /** Peers per stage (primary + replicas) the planner aims for; 1 = no replication. */
  readonly replicas?: number | undefined
  /** Replaces placement entirely (tests, custom strategies). */
  readonly planner?: Planner | undefined
  readonly now?: (() => number) | undefined
  readonly metrics?: ServerMetrics | undefined
  readonly onError?: ((err: unknown) => void) | undefined
}

/** Placement over the workers' announced capabilities, layerStepsPerSec standing in for tokensPerSec. */
export function placementPlanner(options: PlacementOptions = {}, replicas = 1): Planner {
  // Churn often returns to a membership seen before (a stage-less peer comes and goes).
  const cache = new PlanCache()
  return (config, workers) => {
    const peers = workers.map((w) => ({
      id: w.id,
      memoryBytes: w.memoryBytes,
      tokensPerSec: w.layerStepsPerSec,
      backend: w.backend,
    }))
    if (replicas <= 1) return cache.plan(config, peers, options).stages
    const classes = new Map(workers.map((w) => [w.id, numericClassOf(w)]))
    return replicatedPlan(
      config,
      peers,
      replicas,
      (subset) => cache.plan(config, subset, options).stages,
      (id) => classes.get(id) ?? '',
    )
  }
}

/**
 * Plans over ⌊n / r⌋ peers (at least one), then hands every other peer to a stage
 * as a replica, wherever its memory holds that stage's layers. Replicas of a stage run the same
 * layers, so the coordinator can vote among them. Homogeneous redundancy (BOINC): a peer joins a
 * stage whose peers are all of its numeric class when one fits, since replicas of classes too far
 * apart never vote together; among the candidates, the stage with the fewest replicas wins (ties
 * go round-robin).
 */
export function replicatedPlan(
  config: ModelConfig,
  peers: readonly PeerCapacity[],
  replicas: number,
  plan: (peers: readonly PeerCapacity[]) => readonly PlanStage[],
  classOf: (peerId: string) => string = () => '',
): PlanStage[] {
  const ranked = [...peers].sort((a, b) => b.memoryBytes - a.memoryBytes || (a.id < b.id ? -1 : 1))
  // Each class first gets a stage per r of its peers (its largest ones lead), so classes that can
  // fill stages alone do; any stage left goes to the largest peers remaining.
  const k = Math.max(1, Math.floor(ranked.length / replicas))
  const byClass = new Map<string, PeerCapacity[]>()
  for (const p of ranked) byClass.set(classOf(p.id), [...(byClass.get(classOf(p.id)) ?? []), p])
  const primaries: PeerCapacity[] = []
  for (const list of [...byClass.values()].sort((a, b) => b.length - a.length)) {
    for (const p of list.slice(0, Math.floor(list.length / replicas)))
      if (primaries.length < k) primaries.push(p)
  }
  for (const p of ranked) if (primaries.length < k && !primaries.includes(p)) primaries.push(p)
  const stages = plan(primaries).map((s) => ({ ...s, replicas: [] as string[] }))
  let next = 0
  for (const peer of ranked.filter((p) => !stages.some((s) => s.peerId === p.id))) {
    const cls = classOf(peer.id)
    const fits = stages
      .map((stage, i) => ({ stage, i, turn: (i - next + stages.length) % stages.length }))
      .filter(
        ({ stage }) =>
          stage.replicas.length < MAX_STAGE_REPLICAS &&
          stageMemoryBytes(config, stage.start, stage.end) <= peer.memoryBytes,
      )
    const same = fits.filter(({ stage }) =>
      [stage.peerId, ...stage.replicas].every((id) => classOf(id) === cls),
    )
    const pick = (same.length > 0 ? same : fits).sort(
      (a, b) => a.stage.replicas.length - b.stage.replicas.length || a.turn - b.turn,
    )[0]
    if (pick === undefined) continue
    pick.stage.replicas.push(peer.id)
    next = (pick.i + 1) % stages.length
  }
  return stages.map((s) => (s.replicas.length === 0 ? { start: s.start, end: s.end, peerId: s.peerId } : s))
}

// The rule parseJoinRequest applies, so every configured mesh is one a peer can name.
const MESH_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/

/** Every mesh the server hosts, by name. */
export class MeshRegistry {
  private constructor(private readonly meshes: ReadonlyMap<string, Mesh>) {}

  /** Indexes (hashes) each model directory once, even when several meshes share it. */
  static async create(specs: readonly MeshSpec[], options: MeshRegistryOptions): Promise<MeshRegistry> {
    const planner = options.planner ?? placementPlanner(options.planOptions, options.replicas ?? 1)
    const indexes = new Map<string, Promise<ModelIndex>>()
    const meshes = new Map<string, Mesh>()
    for (const spec of specs) {
      if (typeof spec.name !== 'string' || !MESH_NAME.test(spec.name) || spec.name.length > LIMITS.meshName) {
        throw new ServerConfigError(
          `mesh name ${JSON.stringify(spec.name)} must be 1-${LIMITS.meshName} letters, digits, '.', '_' or '-'`,
        )
      }
      if (meshes.has(spec.name)) throw new ServerConfigError(`mesh "${spec.name}" is configured twice`)
      if (spec.meshToken !== undefined && spec.meshToken.length === 0) {
        throw new ServerConfigError(`mesh "${spec.name}": an empty mesh token would let anyone join`)
      }
      const dir = resolve(spec.modelDir)
      const key = `${dir}\0${spec.modelId ?? ''}`
      let index = indexes.get(key)
      if (index === undefined) {
        index = indexModelDir(dir, spec.modelId)
        indexes.set(key, index)
      }
      const name = spec.name
      const model = await index
      const maxContext = Math.min(model.config.maxContext, options.maxContext ?? DEFAULT_SERVED_CONTEXT)
      const mesh = new Mesh({
        name,
        // The served context: what the planner sizes KV caches for and the gateway admits.
        model: { ...model, config: { ...model.config, maxContext } },
        planner,
        meshToken: spec.meshToken,
        heartbeatTimeoutMs: options.heartbeatTimeoutMs,
        ...(options.now ? { now: options.now } : {}),
        onMembership: (n) => options.metrics?.peers.set({ mesh: name }, n),
        onReplan: (timing) => options.metrics?.replanned(name, timing),
        onExcluded: (n) => options.metrics?.peersExcluded.set({ mesh: name }, n),
        onExcludedPeer: (_peer, reason) => options.metrics?.exclusions.inc({ mesh: name, reason }),
        ...(options.onError ? { onError: options.onError } : {}),
      })
      meshes.set(name, mesh)
      options.metrics?.peers.set({ mesh: name }, 0)
    }
    return new MeshRegistry(meshes)
  }

  get(name: string): Mesh | undefined {
    return this.meshes.get(name)
  }

  list(): Mesh[] {
    return [...this.meshes.values()]
  }

  /** Drops timed-out peers in every mesh. */
  sweep(): void {
    for (const mesh of this.meshes.values()) mesh.sweep()
  }

  close(): void {
    for (const mesh of this.meshes.values()) mesh.close()
  }
}
