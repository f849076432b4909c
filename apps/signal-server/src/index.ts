/**
 * @butterfly/signal-server — the control plane and the OpenAI-compatible gateway behind
 * `butterfly-server`. The source is in rooms: `control/` (meshes, members, plans, the socket.io
 * control protocol), `http/` (the Fastify server and its routes, errors, auth), `gateway/` (the
 * in-process coordinator that drives generations over WebRTC) and `api/` (the OpenAI API over
 * the gateway). `api` depends on `gateway`, `gateway` on `control` and `http`; never the reverse.
 *
 * - `createSignalServer(init)`: Fastify + socket.io on one port. Hosts one `Mesh` per configured
 *   name; serves `/models/:mesh/{manifest.json,config.json,tokenizer.json,model.safetensors}`
 *   (or the index and shards of a sharded model; single Range, ETag), `/health` and `/metrics`.
 *   `init.extend(parts)` adds routes before it listens; `parts.provideHealth(source)` gives
 *   `/health` the gateway's stats (votes, link RTTs, tokens generated).
 * - `Mesh`: members, plan and readiness of one mesh. `addLocalPeer(id, handlers)` makes an
 *   in-process member (the gateway); `waitForReadyPlan(signal)`; events 'plan', 'ready',
 *   'peer-joined', 'peer-left', 'close'.
 * - `MeshRegistry`: the meshes by name; `placementPlanner(options)` adapts planPlacement.
 * - `ServerMetrics`: the server's own prom-client Registry and the metrics the gateway records.
 * - `indexModelDir(dir)`: the manifest (file and per-tensor sha256, each tensor's shard) of a
 *   model directory, single-file or sharded.
 * - `healthReport(meshes, source?)`: the `/health` body, typed by core's `HealthReport`.
 * - HTTP helpers: `parseRange`, `sendError`, `httpErrorBody` (the one OpenAI-style error body),
 *   `httpStatusOf` / `toApiError` (the one mapping from error codes to HTTP statuses),
 *   `secretEquals` (constant-time secret comparison), `requireBearer`.
 * - `attachGateway(parts, init, components)`: the coordinator and the OpenAI routes for every
 *   mesh of a server (the CLI serves one mesh; a program may host several, as e2e's picker test does).
 * - `main(argv)`, `buildCli(run)`: the `butterfly-server` CLI (`--model` also takes `hf:ORG/REPO`
 *   and https directory URLs, downloaded once into the cache; `--hf-endpoint`).
 *
 * Socket events follow control-protocol.ts in @butterfly/core; a refused event is answered
 * through its ack as `{ ok: false, error }`, or with an `error-event` when it had no ack.
 */
export { attachGateway, type GatewayInit } from './api/attach-gateway.js'
export { buildCli, type MainOptions, main, type ServerCliOptions } from './cli.js'
export {
  attachControlSocket,
  type ControlSocketOptions,
  ERROR_EVENT,
  type ErrorEvent,
} from './control/control-socket.js'
export { parseIceServers } from './control/ice-servers.js'
export {
  type LocalPeerHandle,
  type LocalPeerHandlers,
  type MemberSink,
  Mesh,
  type MeshEvents,
  type MeshInit,
  type PeerLeftReason,
  type Planner,
  type WorkerInfo,
} from './control/mesh.js'
export {
  MeshRegistry,
  type MeshRegistryOptions,
  type MeshSpec,
  placementPlanner,
} from './control/mesh-registry.js'
export {
  type FileDigest,
  indexModelDir,
  isModelFileName,
  MODEL_FILES,
  type ModelFileName,
  type ModelIndex,
  type ModelManifest,
  type TensorDigest,
} from './control/model-index.js'
export { secretEquals } from './control/secret-equals.js'
export { ServerMetrics } from './control/server-metrics.js'
export { ServerConfigError } from './errors.js'
export { bearerMatches, bearerToken, requireBearer } from './http/auth.js'
export {
  type HealthPeer,
  type HealthReport,
  type HealthSource,
  healthReport,
  type MeshHealth,
  type MeshStats,
  registerHealthRoutes,
} from './http/health-routes.js'
export {
  ApiError,
  type HttpErrorBody,
  httpErrorBody,
  httpStatusOf,
  sendError,
  toApiError,
} from './http/http-errors.js'
export { parseRange, type RangeResult } from './http/http-range.js'
export { registerModelRoutes } from './http/model-routes.js'
export {
  createSignalServer,
  type ResolvedServerInit,
  type ServerInit,
  type ServerParts,
  type SignalServer,
} from './http/signal-server.js'
