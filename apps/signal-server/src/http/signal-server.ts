import type { IceServer, IceTransportPolicy, PlacementOptions } from '@butterfly/core'
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { Server as SocketServer } from 'socket.io'
import { type Cluster, startCluster } from '../control/cluster.js'
import { attachControlSocket } from '../control/control-socket.js'
import { parseIceServers } from '../control/ice-servers.js'
import { JoinAdmission } from '../control/join-admission.js'
import { JoinTokenStore } from '../control/join-tokens.js'
import type { Planner } from '../control/mesh.js'
import { MeshRegistry, type MeshSpec } from '../control/mesh-registry.js'
import { ServerMetrics } from '../control/server-metrics.js'
import {
  createIceFor,
  type IceFor,
  parseIceTransportPolicy,
  parseTurnConfig,
} from '../control/turn-credentials.js'
import { ServerConfigError } from '../errors.js'
import { registerAdminRoutes } from './admin-routes.js'
import { type HealthSource, registerHealthRoutes } from './health-routes.js'
import { sendError } from './http-errors.js'
import { registerModelRoutes } from './model-routes.js'
import { registerWebRoutes } from './web-routes.js'

export interface ServerInit {
  /** Default 127.0.0.1. */
  readonly host?: string
  /** Default 8080; 0 picks a free port (see SignalServer.url). */
  readonly port?: number
  readonly meshes: readonly MeshSpec[]
  /** The built web app served at `/`; default apps/web/dist; false serves none. */
  readonly webDir?: string | false
  /** Bearer token for the OpenAI-compatible API (the routes the gateway adds); not checked here. */
  readonly apiToken?: string | undefined
  /** Per-peer join tokens live in this JSON file (read at start, rewritten atomically on change). */
  readonly joinTokenFile?: string | undefined
  /** Enables /admin (issue, list, revoke join tokens) behind this bearer token; without it /admin is 404. */
  readonly adminToken?: string | undefined
  /** The shared mesh token alone admits nobody: workers need a per-peer token. Default false. */
  readonly requirePeerTokens?: boolean | undefined
  /** Live members per source address. Default DEFAULT_MAX_PEERS_PER_ADDRESS (32). */
  readonly maxPeersPerAddress?: number | undefined
  /** Join attempts per minute per source address (token bucket). Default DEFAULT_JOIN_RATE (600). */
  readonly joinRate?: number | undefined
  /** Handed to every peer in its join ack for WebRTC. Default []. */
  readonly iceServers?: readonly IceServer[]
  /** TURN servers sharing this secret (coturn `use-auth-secret`): each join gets minted credentials. */
  readonly turn?:
    | { readonly secret: string; readonly urls: readonly string[]; readonly ttlSeconds?: number }
    | undefined
  /** Handed to every peer: 'relay' forces every connection through TURN. Default 'all'. */
  readonly iceTransportPolicy?: IceTransportPolicy
  /** Test hook: the clock TURN credentials' expiry is counted from. Default `now`. */
  readonly turnClock?: () => number
  /** How often peers should heartbeat; told to them in the join ack. Default 5000. */
  readonly heartbeatMs?: number
  /** A worker silent this long is dropped and the mesh re-planned. Default 15000. */
  readonly heartbeatTimeoutMs?: number
  /** How often timeouts are checked. Default heartbeatTimeoutMs / 3, at least 10 ms. */
  readonly sweepIntervalMs?: number
  readonly planOptions?: PlacementOptions
  /**
   * Tokens of context served per generation: each model's max_position_embeddings is capped to
   * it, so the planner reserves (and the gateway admits) no more KV cache than this. Default:
   * the model's own context, at most DEFAULT_SERVED_CONTEXT.
   */
  readonly maxContext?: number
  /** Peers per stage (primary + replicas) for result voting; default 1. */
  readonly replicas?: number
  /** Replaces placement (tests, custom strategies). */
  readonly planner?: Planner
  /** Clock for heartbeat timeouts, join rates and token expiry. Default Date.now. */
  readonly now?: () => number
  /**
   * Runs after the control plane is set up and before the server listens: the place to add
   * routes (Fastify refuses new routes once listening), e.g. the gateway's OpenAI API.
   */
  readonly extend?: (parts: ServerParts) => Promise<void> | void
  /**
   * Shares the meshes with every other server on this Redis (membership, plans, exclusions,
   * signals): several servers, one mesh. Without it everything stays in this process.
   */
  readonly redis?:
    | {
        readonly url: string
        readonly syncMs?: number
        readonly keyPrefix?: string
        readonly holdSignalMs?: number
        /** Seals every value in Redis and every message between servers (see cluster-seal.ts). */
        readonly secret?: string | undefined
      }
    | undefined
  /** Fastify logger option. Default false. */
  readonly logger?: FastifyServerOptions['logger']
}

/** What `extend` gets to build on. */
export interface ServerParts {
  readonly app: FastifyInstance
  readonly meshes: MeshRegistry
  readonly metrics: ServerMetrics
  /** Join rules: per-peer tokens, per-address limits. */
  readonly admission: JoinAdmission
  /** ICE servers (fresh TURN credentials) and policy for a peer id: the gateway's own peer uses it. */
  readonly iceFor: IceFor
  /** Hands /health what the control plane does not know itself (the gateway's stats). */
  provideHealth(source: HealthSource): void
  /** Present with `redis`: this server's place in the cluster. */
  readonly cluster: Cluster | undefined
}

/** ServerInit with every default filled in. */
export interface ResolvedServerInit {
  readonly host: string
  readonly port: number
  readonly apiToken: string | undefined
  readonly iceServers: readonly IceServer[]
  readonly iceFor: IceFor
  readonly heartbeatMs: number
  readonly heartbeatTimeoutMs: number
}

export interface SignalServer extends ServerParts {
  /** `http://host:port` actually listened on. */
  readonly url: string
  readonly io: SocketServer
  readonly options: ResolvedServerInit
  close(): Promise<void>
}

/**
 * Starts the control plane: Fastify (model files, /health, /metrics) with socket.io on the same
 * HTTP server. Routes added to `app` after this resolves work as usual (Fastify compiles them
 * lazily), which is how the gateway's API joins it.
 */
export async function createSignalServer(init: ServerInit): Promise<SignalServer> {
  const options = resolveInit(init)
  const tokens =
    init.joinTokenFile !== undefined || init.adminToken !== undefined
      ? JoinTokenStore.open(init.joinTokenFile, init.now)
      : undefined
  const metrics = new ServerMetrics()
  const app = Fastify({ logger: init.logger ?? false, forceCloseConnections: true })
  const onError = (err: unknown) => app.log.error({ err }, 'control plane error')
  const meshes = await MeshRegistry.create(init.meshes, {
    heartbeatTimeoutMs: options.heartbeatTimeoutMs,
    planOptions: init.planOptions,
    maxContext: init.maxContext,
    replicas: init.replicas,
    planner: init.planner,
    now: init.now,
    metrics,
    onError,
  })

  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 404, 'not_found', `no route for ${request.method} ${request.url.slice(0, 200)}`),
  )
  app.setErrorHandler((err: FastifyError, _request, reply) => {
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 ? err.statusCode : 500
    if (status >= 500) app.log.error({ err }, 'request failed')
    const message = status >= 500 ? 'internal server error' : err.message
    return sendError(reply, status, err.code ?? 'internal_error', message)
  })
  const admission = new JoinAdmission(meshes, {
    tokens,
    requirePeerTokens: init.requirePeerTokens,
    maxPeersPerAddress: init.maxPeersPerAddress,
    joinRate: init.joinRate,
    now: init.now,
  })
  registerModelRoutes(app, (name) => meshes.get(name)?.model)
  if (init.adminToken !== undefined) registerAdminRoutes(app, init.adminToken, meshes, admission)
  let health: HealthSource | undefined
  const provideHealth = (source: HealthSource) => {
    health = source
  }
  registerHealthRoutes(app, meshes, metrics, () => health)
  if (init.webDir !== false) await registerWebRoutes(app, init.webDir)

  const io = new SocketServer(app.server, { serveClient: false, cors: { origin: true } })
  let cluster: Cluster | undefined
  if (init.redis !== undefined) {
    try {
      cluster = await startCluster({
        ...init.redis,
        io,
        registry: meshes,
        admission,
        deadAfterMs: options.heartbeatTimeoutMs,
        onRejected: (err) => {
          metrics.clusterRejected.inc({ code: err.code })
          app.log.warn({ err }, 'cluster payload refused')
        },
        onError: (err) => {
          metrics.clusterErrors.inc()
          app.log.warn({ err }, 'cluster error')
        },
        ...(init.now ? { now: init.now } : {}),
      })
    } catch (err) {
      meshes.close()
      await app.close()
      throw err
    }
  }
  attachControlSocket(io, {
    registry: meshes,
    iceServers: options.iceServers,
    iceFor: options.iceFor,
    heartbeatMs: options.heartbeatMs,
    admission,
    onJoinRefused: (code) => metrics.joinsRefused.inc({ code }),
    onError,
  })
  app.addHook('preClose', async () => {
    // The cluster first: this server's records go at once, and its own members' departures
    // (below) are not written back to the cluster one by one.
    await cluster?.close()
    meshes.close()
    io.local.disconnectSockets(true)
    io.engine.close()
  })

  const sweepMs = init.sweepIntervalMs ?? Math.max(10, Math.floor(options.heartbeatTimeoutMs / 3))
  const sweeper = setInterval(() => meshes.sweep(), sweepMs)
  sweeper.unref()
  try {
    await init.extend?.({ app, meshes, metrics, admission, iceFor: options.iceFor, provideHealth, cluster })
    await app.listen({ host: options.host, port: options.port })
  } catch (err) {
    clearInterval(sweeper)
    await cluster?.close()
    meshes.close()
    await app.close()
    throw err
  }
  let closing: Promise<void> | undefined
  return {
    url: listeningUrl(app),
    app,
    io,
    meshes,
    metrics,
    admission,
    iceFor: options.iceFor,
    provideHealth,
    cluster,
    options,
    close: () => {
      closing ??= (async () => {
        clearInterval(sweeper)
        await app.close()
      })()
      return closing
    },
  }
}

function resolveInit(init: ServerInit): ResolvedServerInit {
  const heartbeatMs = init.heartbeatMs ?? 5000
  const heartbeatTimeoutMs = init.heartbeatTimeoutMs ?? 3 * heartbeatMs
  const port = init.port ?? 8080
  if (!Number.isSafeInteger(port) || port < 0 || port > 65_535) {
    throw new ServerConfigError(`port must be an integer from 0 to 65535, got ${String(port)}`)
  }
  if (!Number.isSafeInteger(heartbeatMs) || heartbeatMs < 1 || heartbeatMs > 3_600_000) {
    throw new ServerConfigError(
      `heartbeatMs must be an integer from 1 to 3600000, got ${String(heartbeatMs)}`,
    )
  }
  if (!Number.isSafeInteger(heartbeatTimeoutMs) || heartbeatTimeoutMs < heartbeatMs) {
    throw new ServerConfigError(
      `heartbeatTimeoutMs must be an integer no less than heartbeatMs (${heartbeatMs}), got ${String(heartbeatTimeoutMs)}`,
    )
  }
  if (init.apiToken !== undefined && init.apiToken.length === 0) {
    throw new ServerConfigError('an empty API token would let anyone in; leave it unset instead')
  }
  if (init.adminToken !== undefined && init.adminToken.length === 0) {
    throw new ServerConfigError('an empty admin token would let anyone in; leave it unset instead')
  }
  if (init.requirePeerTokens === true && init.joinTokenFile === undefined && init.adminToken === undefined) {
    throw new ServerConfigError('requirePeerTokens needs joinTokenFile or adminToken, or nobody could join')
  }
  for (const [field, value] of [
    ['maxPeersPerAddress', init.maxPeersPerAddress],
    ['joinRate', init.joinRate],
  ] as const) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1 || value > 1_000_000)) {
      throw new ServerConfigError(`${field} must be an integer from 1 to 1000000, got ${String(value)}`)
    }
  }
  const iceServers = parseIceServers(init.iceServers ?? [])
  const clock = init.turnClock ?? init.now
  const iceFor = createIceFor({
    iceServers,
    turn: parseTurnConfig(init.turn ?? {}),
    iceTransportPolicy: parseIceTransportPolicy(init.iceTransportPolicy),
    ...(clock === undefined ? {} : { now: clock }),
  })
  return {
    host: init.host ?? '127.0.0.1',
    port,
    apiToken: init.apiToken,
    iceServers,
    iceFor,
    heartbeatMs,
    heartbeatTimeoutMs,
  }
}

function listeningUrl(app: FastifyInstance): string {
  const address = app.server.address()
  if (address === null || typeof address === 'string')
    throw new ServerConfigError('server has no TCP address')
  // Listening on every interface: hand out a URL this machine's clients can reach.
  const ip = address.address === '0.0.0.0' ? '127.0.0.1' : address.address === '::' ? '::1' : address.address
  const host = ip.includes(':') ? `[${ip}]` : ip
  return `http://${host}:${address.port}`
}
