import {
  type HealthReport,
  type LinkStat,
  type MeshHealth,
  numericClassOf,
  type ReputationSnapshot,
  type VerificationHealth,
} from '@butterfly/core'
import type { FastifyInstance } from 'fastify'
import type { MeshRegistry } from '../control/mesh-registry.js'
import type { ServerMetrics } from '../control/server-metrics.js'

export type { HealthPeer, HealthReport, MeshHealth } from '@butterfly/core'

/** What the coordinator knows of one mesh, for /health. */
export interface MeshStats {
  /** Votes per peer; absent when nobody votes. */
  readonly reputation?: ReputationSnapshot
  readonly links: readonly LinkStat[]
  readonly tokensGenerated: number
  readonly verification?: VerificationHealth
}

/**
 * Where /health reads what the control plane itself does not know: the gateway implements it
 * and hands it over at wiring time (ServerParts.provideHealth).
 */
export interface HealthSource {
  /** Undefined for a mesh the source does not serve. */
  meshStats(mesh: string): MeshStats | undefined
}

/** The /health body: the control plane's view of every mesh, plus the source's stats. */
export function healthReport(meshes: MeshRegistry, source?: HealthSource): HealthReport {
  return {
    status: 'ok',
    meshes: meshes.list().map((mesh): MeshHealth => {
      const error = mesh.planError
      const excluded = new Set(mesh.excludedPeers())
      const stats = source?.meshStats(mesh.name)
      const reputation = stats?.reputation
      return {
        name: mesh.name,
        modelId: mesh.modelId,
        peers: mesh.workers().map((w) => {
          const reason = mesh.exclusionReason(w.id)
          return {
            id: w.id,
            name: w.name,
            backend: w.backend,
            numericClass: numericClassOf(w),
            memoryBytes: w.memoryBytes,
            layerStepsPerSec: w.layerStepsPerSec,
            excluded: excluded.has(w.id),
            ...(reason === undefined ? {} : { excludedReason: reason }),
          }
        }),
        plan: mesh.plan,
        ...(error === undefined ? {} : { planError: error }),
        ready: mesh.isReady(),
        ...(reputation === undefined ? {} : { reputation }),
        links: stats?.links ?? [],
        tokensGenerated: stats?.tokensGenerated ?? 0,
        ...(stats?.verification === undefined ? {} : { verification: stats.verification }),
      }
    }),
  }
}

/** GET /health (JSON) and GET /metrics (Prometheus text from the server's own registry). */
export function registerHealthRoutes(
  app: FastifyInstance,
  meshes: MeshRegistry,
  metrics: ServerMetrics,
  source: () => HealthSource | undefined = () => undefined,
): void {
  app.get('/health', async (_request, reply) => {
    return reply.header('cache-control', 'no-store').send(healthReport(meshes, source()))
  })
  app.get('/metrics', async (_request, reply) => {
    const body = await metrics.text()
    return reply.header('cache-control', 'no-store').type(metrics.contentType).send(body)
  })
}
