import type { InferenceBackend, StageSession } from '../engine/inference-backend.js'
import type { PeerIdentity } from '../identity/peer-identity.js'
import { signResult, signResults } from '../identity/step-signature.js'
import type { ModelConfig } from '../model/model-config.js'
import { parseModelConfig } from '../model/parse-model-config.js'
import type { Int4Compute } from '../onnx/matmul-nbits.js'
import { fetchJson, openRemoteModel, type TensorCache } from '../remote/remote-model.js'
import type { MessageConnection } from '../transport/message-connection.js'
import { createWebRtcTransport, type IceServer } from '../transport/webrtc-transport.js'
import { fromFloat32, toFloat32 } from '../weights/float16.js'
import { fingerprinted } from '../weights/weight-provider.js'
import { type Backend, type PlanMessage, type Precision, stagePeers } from './control-protocol.js'
import { ControlSession } from './control-session.js'
import { benchmarkLayerSteps } from './layer-benchmark.js'
import { PeerLinks } from './peer-links.js'
import { createStageHost, type StageHost } from './stage-host.js'
import { stageFingerprint, stageTensorNames } from './stage-weights.js'

export { stageTensorNames } from './stage-weights.js'

export interface WorkerNodeInit {
  readonly serverUrl: string
  /**
   * Servers to rejoin through, after `serverUrl`, when the server drops this worker. The worker
   * keeps its identity, its stage (when the new plan gives it the same layers of the same
   * files) and its peer connections. Without `reconnectForMs` it does not rejoin at all.
   */
  readonly failoverUrls?: readonly string[]
  /** How long to keep trying to rejoin a dropped worker, over every server; default 0 (never). */
  readonly reconnectForMs?: number
  readonly mesh: string
  readonly token: string
  readonly name: string
  readonly memoryBytes: number
  readonly backendName: Backend
  /**
   * 'fp16' rounds the stage's weights to fp16 as they load (half the weight memory; math stays
   * fp32): the peer joins as numeric class backend/fp16w. Default 'fp32' keeps the file's values.
   */
  readonly weights?: 'fp32' | 'fp16'
  /**
   * The products the backend computes for an int4 model (set it to the backend's own setting):
   * with 'int8' the peer joins as numeric class backend/int8a. Ignored for other models.
   */
  readonly int4Compute?: Int4Compute
}

export interface WorkerNodeComponents {
  readonly backend: InferenceBackend
  /** RTCPeerConnection implementation (node-datachannel's polyfill). */
  readonly wrtc: unknown
  readonly log?: (line: string) => void
  /** Download progress of the stage's tensors. */
  readonly onDownload?: (done: number, total: number) => void
  /** The peer's long-lived key (node-worker keeps it in a file, a tab in its storage). */
  readonly identity: PeerIdentity
  /** Tensors kept from earlier downloads (a tab's Cache Storage): a stage loads them from there. */
  readonly tensorCache?: TensorCache
  /** Relay-only ICE: checks TURN takes its credentials, a clear error instead of a dial timeout. */
  readonly checkIce?: (servers: readonly IceServer[]) => Promise<void>
}

export interface WorkerNode {
  readonly peerId: string
  readonly layerStepsPerSec: number
  /** The layer range served now, if any. */
  readonly stage: { start: number; end: number } | undefined
  readonly stepsServed: number
  /** Bytes received from and sent to coordinators, over every connection this worker served. */
  readonly bytes: { readonly in: number; readonly out: number }
  /** Resolves when the stage of plan `version` (or a later one) is loaded and announced. */
  whenReady(version?: number): Promise<void>
  /** The server this worker is joined through now. */
  readonly serverUrl: string
  /**
   * Resolves with the reason when the server drops this worker (e.g. it missed its heartbeats)
   * other than through stop(), and no server took it back within `reconnectForMs`: the worker
   * no longer belongs to any plan and should be restarted.
   */
  readonly disconnected: Promise<string>
  /** Finishes in-flight steps (waiting at most drainMs, default 15 s), tells the server, leaves. */
  stop(options?: { drainMs?: number }): Promise<void>
}

/**
 * A worker in a mesh: joins with a benchmark figure, loads whatever layers the plan gives it
 * (downloading only those tensors), and serves steps to coordinators over WebRTC.
 */
export async function startWorkerNode(
  init: WorkerNodeInit,
  components: WorkerNodeComponents,
): Promise<WorkerNode> {
  const log = components.log ?? (() => undefined)
  const servers = [
    ...new Set([init.serverUrl, ...(init.failoverUrls ?? [])].map((u) => u.replace(/\/$/, ''))),
  ]
  const config = await firstConfig(servers, init.mesh)
  const layerStepsPerSec = await benchmarkLayerSteps(config, components.backend)
  log(`benchmark: ${layerStepsPerSec.toFixed(0)} layer-steps/s on ${components.backend.name}`)

  const identity = components.identity
  const control = await ControlSession.open(
    {
      servers,
      join: {
        mesh: init.mesh,
        token: init.token,
        capabilities: {
          backend: init.backendName,
          precision: precisionOf(init, config),
          memoryBytes: init.memoryBytes,
          layerStepsPerSec,
          name: init.name,
        },
      },
      reconnectForMs: init.reconnectForMs ?? 0,
    },
    { identity, log },
  )
  const ack = control.ack
  log(`joined mesh ${init.mesh} as ${ack.peerId}${servers.length > 1 ? ` through ${control.serverUrl}` : ''}`)
  if (ack.iceTransportPolicy === 'relay')
    await components
      .checkIce?.(ack.iceServers)
      .catch((err: unknown) => control.leave().then(() => Promise.reject(err)))
  let stopping = false
  const disconnected = control.lost.then((reason) => {
    if (!stopping && (init.reconnectForMs ?? 0) > 0) log(`gave up rejoining the mesh (${reason})`)
    return reason
  })
  // Made once: its connections outlive a change of server.
  const transport = createWebRtcTransport(
    // The latest join's servers: a rejoin (through another server too) brings fresh TURN credentials.
    {
      peerId: ack.peerId,
      iceServers: () => control.ack.iceServers,
      iceTransportPolicy: ack.iceTransportPolicy ?? 'all',
    },
    { signaling: control, wrtc: components.wrtc },
  )

  let current:
    | {
        start: number
        end: number
        stage: StageSession
        host: StageHost
        /** The model directory it was loaded from, and what it was built from. */
        source: string
        fingerprint: string
      }
    | undefined
  let readyVersion = -1
  let stepsServed = 0
  const readyWaiters: Array<{ version: number; resolve: () => void }> = []
  const connections = new Map<MessageConnection, () => void>()
  /** Traffic of connections already closed (the open ones are counted live). */
  let closedIn = 0
  let closedOut = 0

  // With no stage loaded (between plans, or after release), steps are refused at once with
  // ERR_STAGE_GONE so the coordinator moves on instead of waiting for a timeout.
  // A chained step is refused to its coordinator, which waits for it, not to the peer before.
  const refuse = (conn: MessageConnection) =>
    conn.onMessage((msg) => {
      const requests = msg.type === 'StepRequest' ? [msg] : msg.type === 'StepRequests' ? msg.requests : []
      const error = { name: 'StageError', code: 'ERR_STAGE_GONE', message: 'this peer holds no stage now' }
      const sender = links.peerOf(conn)
      const trusted = sender !== undefined && links.inPlan(sender)
      for (const r of requests) {
        const routed = r.replyTo !== undefined && (trusted || sender === r.replyTo)
        const to = (routed ? links.connectionOf(r.replyTo as string) : undefined) ?? conn
        to.send({ type: 'StepError', generationId: r.generationId, stepIndex: r.stepIndex, error }).catch(
          () => undefined,
        )
      }
    })
  const serve = (conn: MessageConnection) => (current && !stopping ? current.host.serve(conn) : refuse(conn))
  const serveAll = () => {
    for (const [conn, off] of connections) {
      off()
      connections.set(conn, serve(conn))
    }
  }
  const links = new PeerLinks(transport, (conn) => {
    connections.set(conn, serve(conn))
    conn.onClose(() => {
      closedIn += conn.bytesReceived
      closedOut += conn.bytesSent
      connections.delete(conn)
    })
  })

  let queue: Promise<void> = Promise.resolve()
  control.onPlan(
    (plan, server) => {
      queue = queue
        .then(() => apply(plan, server))
        .catch((err) => {
          log(`plan ${plan.version} failed: ${(err as Error).message}`)
          // The server takes the layers back and records why (a peer that cannot hold what it claimed).
          if (!stopping && plan.stages.some((s) => stagePeers(s).includes(ack.peerId))) {
            control.stageFailed(plan.version, err)
          }
        })
    },
    (err) => log(`ignored an invalid plan: ${(err as Error).message}`),
  )

  async function apply(plan: PlanMessage, server: string): Promise<void> {
    // A plan of a server this worker has left since: its successor's plans are what count.
    if (stopping || server !== control.serverUrl) return
    links.setPlan(plan.stages.flatMap(stagePeers))
    const mine = plan.stages.find((s) => stagePeers(s).includes(ack.peerId))
    const source = `${server}${plan.modelPath}`
    const opts = components.tensorCache ? { cache: components.tensorCache } : {}
    const same = current !== undefined && mine?.start === current.start && mine.end === current.end
    if (current && same && current.source !== source) {
      // Another server's plan (a failover): the layers stay loaded if its files are the same.
      const other = await openRemoteModel(source, opts)
      const names = stageTensorNames(other.config, current.start, current.end)
      if (stageFingerprint(other, names, init.weights ?? 'fp32') === current.fingerprint) {
        current.source = source
        log(`kept layers [${current.start}, ${current.end}) under the plan of ${server}`)
      }
    }
    if (current && (!same || current.source !== source)) {
      const old = current
      current = undefined
      serveAll()
      // A hung step must not block the next plan; the coordinator has given up on it by now.
      await settleWithin(old.host.drain(), 15_000)
      old.host.close()
      await old.stage.dispose()
      log(`released layers [${old.start}, ${old.end})`)
    }
    if (mine && !current) {
      const loadStart = Date.now()
      const remote = await openRemoteModel(source, opts)
      const names = stageTensorNames(remote.config, mine.start, mine.end)
      const total = remote.stageBytes(names)
      let done = 0
      const fingerprint = stageFingerprint(remote, names, init.weights ?? 'fp32')
      const weights = fingerprinted(async (name: string, shape: readonly number[]) => {
        const t = await remote.weights(name, shape)
        done += t.data.byteLength
        components.onDownload?.(done, total)
        // fp16w rounds float weights only; int4 levels and their scales stay as stored.
        if (init.weights !== 'fp16' || t.dtype !== 'F32' || name.endsWith('.scales')) return t
        return { ...t, dtype: 'F16' as const, data: fromFloat32(toFloat32(t), 'F16') }
      }, fingerprint)
      const stage = await components.backend.createStage(
        { config: remote.config, layerStart: mine.start, layerEnd: mine.end },
        weights,
      )
      const host = createStageHost(stage, {
        onStep: () => stepsServed++,
        sign: (f) => signResult(identity, { ...f, mesh: init.mesh }),
        signBatch: (fs) => signResults(identity, init.mesh, fs),
        links,
      })
      current = { start: mine.start, end: mine.end, stage, host, source, fingerprint }
      serveAll()
      // No tensor fetched: the backend opened the stage from its stage cache.
      const how = done === 0 && total > 0 ? 'opened from the stage cache' : 'downloaded and loaded'
      log(
        `serving layers [${mine.start}, ${mine.end}) of ${remote.manifest.modelId} (${how} in ${Date.now() - loadStart} ms)`,
      )
    }
    readyVersion = plan.version
    control.stageReady(plan.version)
    for (const w of readyWaiters.splice(0)) {
      if (w.version <= readyVersion) w.resolve()
      else readyWaiters.push(w)
    }
  }

  return {
    peerId: ack.peerId,
    layerStepsPerSec,
    get serverUrl() {
      return control.serverUrl
    },
    get stage() {
      return current ? { start: current.start, end: current.end } : undefined
    },
    get bytes() {
      let bytesIn = closedIn
      let bytesOut = closedOut
      for (const conn of connections.keys()) {
        bytesIn += conn.bytesReceived
        bytesOut += conn.bytesSent
      }
      return { in: bytesIn, out: bytesOut }
    },
    get stepsServed() {
      return stepsServed
    },
    disconnected,
    whenReady(version = 0) {
      if (readyVersion >= version) return Promise.resolve()
      return new Promise((resolve) => readyWaiters.push({ version, resolve }))
    },
    async stop(options = {}) {
      if (stopping) return
      stopping = true
      const drainMs = options.drainMs ?? 15_000
      await settleWithin(queue, drainMs + 15_000)
      // A step that never finishes (a hung device) must not keep the worker from leaving.
      if (current) await settleWithin(current.host.drain(), drainMs)
      await control.leave()
      links.close()
      for (const conn of connections.keys()) conn.close()
      await transport.close()
      if (current) {
        current.host.close()
        await current.stage.dispose()
      }
    },
  }
}

/** The numeric class's precision a worker joins with. */
function precisionOf(init: WorkerNodeInit, config: ModelConfig): Precision {
  if (init.weights === 'fp16') return 'fp16w'
  return init.int4Compute === 'int8' && config.quantization?.method === 'int4' ? 'int8a' : 'fp32'
}

/** The model's config from the first server that serves it (the worker benchmarks on it). */
async function firstConfig(servers: readonly string[], mesh: string): Promise<ModelConfig> {
  let last: unknown
  for (const server of servers) {
    const url = `${server}/models/${mesh}/config.json`
    try {
      return parseModelConfig(await fetchJson(url), url)
    } catch (err) {
      last = err
    }
  }
  throw last
}

function settleWithin(work: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms)
  })
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer))
}
