import { numericClassOf, type PlanMessage, type WireError } from '@butterfly/core'
import type { FastifyInstance } from 'fastify'
import type { MeshRegistry } from '../control/mesh-registry.js'
import type { ServerMetrics } from '../control/server-metrics.js'
import type { LinkStat } from '../gateway/link-prober.js'

export interface HealthPeer {
  readonly id: string
  readonly name: string
  readonly backend: string
  /** Numeric class (backend/precision): replicas vote within homogeneous classes. */
  readonly numericClass: string
  readonly memoryBytes: number
  readonly layerStepsPerSec: number
  /** Outvoted too often: a member, but given no layers. */
  readonly excluded: boolean
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
  readonly reputation?: unknown
  /** Round-trip times of the gateway's links to the workers it has dialled. */
  readonly links: readonly LinkStat[]
  /** Tokens generated on this mesh since the server started (the web app charts its rate). */
  readonly tokensGenerated: number
}

export interface HealthReport {
  readonly status: 'ok'
  readonly meshes: readonly MeshHealth[]
}

export function healthReport(meshes: MeshRegistry): HealthReport {
  return {
    status: 'ok',
    meshes: meshes.list().map((mesh) => {
      const error = mesh.planError
      const excluded = new Set(mesh.excludedPeers())
      const reputation = mesh.reputation?.()
      return {
        name: mesh.name,
        modelId: mesh.modelId,
        peers: mesh.workers().map((w) => ({
          id: w.id,
          name: w.name,
          backend: w.backend,
          numericClass: numericClassOf(w),
          memoryBytes: w.memoryBytes,
          layerStepsPerSec: w.layerStepsPerSec,
          excluded: excluded.has(w.id),
        })),
        plan: mesh.plan,
        ...(error === undefined ? {} : { planError: error }),
        ready: mesh.isReady(),
        ...(reputation === undefined ? {} : { reputation }),
        links: mesh.links?.() ?? [],
        tokensGenerated: mesh.tokensGenerated,
      }
    }),
  }
}

/** GET /health (JSON) and GET /metrics (Prometheus text from the server's own registry). */
export function registerHealthRoutes(
  app: FastifyInstance,
  meshes: MeshRegistry,
  metrics: ServerMetrics,
): void {
  app.get('/health', async (_request, reply) => {
    return reply.header('cache-control', 'no-store').send(healthReport(meshes))
  })
  app.get('/metrics', async (_request, reply) => {
    const body = await metrics.text()
    return reply.header('cache-control', 'no-store').type(metrics.contentType).send(body)
  })
}
