import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  generateIdentity,
  type JoinAck,
  type PeerIdentity,
  type PlanMessage,
  signJoinProof,
  toBase64url,
} from '@butterfly/core'
import { resolveModelDir } from '@butterfly/node-platform'
import { io, type Socket } from 'socket.io-client'
import type { Mesh, Planner } from '../src/control/mesh.js'
import { createSignalServer, type ServerInit, type SignalServer } from '../src/http/signal-server.js'

/** A synthetic model written once per test file into a temp cache. */
export async function tinyModel(): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const cache = await mkdtemp(join(tmpdir(), 'bf-server-'))
  const dir = await resolveModelDir('synthetic:tiny', cache)
  return { dir, cleanup: () => rm(cache, { recursive: true, force: true }) }
}

/** A manual clock for heartbeat timeouts: tests move time, then sweep. */
export function manualClock(start = 1_000_000): { now: () => number; advance(ms: number): void } {
  let t = start
  return {
    now: () => t,
    advance: (ms) => {
      t += ms
    },
  }
}

/**
 * A server whose one mesh ('default') puts every layer on its first worker: joins and leaves of
 * the others change no stage, as most churn among many peers changes none.
 */
export async function firstTakesAllServer(): Promise<{
  server: SignalServer
  mesh: Mesh
  close(): Promise<void>
}> {
  const firstTakesAll: Planner = (config, workers) => {
    const first = workers[0]
    return first === undefined ? [] : [{ start: 0, end: config.numLayers, peerId: first.id }]
  }
  const model = await tinyModel()
  const server = await startServer({
    meshes: [{ name: 'default', modelDir: model.dir }],
    planner: firstTakesAll,
  })
  return {
    server,
    mesh: server.meshes.get('default') as Mesh,
    async close() {
      await closeClients(server)
      await server.close()
      await model.cleanup()
    },
  }
}

export function startServer(init: Partial<ServerInit> & Pick<ServerInit, 'meshes'>): Promise<SignalServer> {
  // A sweep interval far beyond any test keeps timeouts under the test's explicit control.
  return createSignalServer({ host: '127.0.0.1', port: 0, sweepIntervalMs: 3_600_000, ...init })
}

const clients: Socket[] = []
const nonces = new WeakMap<Socket, string>()

/** Connects and waits for the server's hello, whose nonce join proofs sign (see nonceOf). */
export async function connect(server: SignalServer): Promise<Socket> {
  const socket = io(server.url, { transports: ['websocket'], reconnection: false, forceNew: true })
  clients.push(socket)
  const hello = new Promise<void>((resolve) =>
    socket.once('hello', (h: { nonce: string }) => {
      nonces.set(socket, h.nonce)
      resolve()
    }),
  )
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('connect_error', reject)
  })
  await hello
  return socket
}

/** The nonce the server greeted this connection with. */
export function nonceOf(socket: Socket): string {
  const nonce = nonces.get(socket)
  if (nonce === undefined) throw new Error('socket has no hello nonce')
  return nonce
}

/**
 * A join payload for `socket`: `publicKey` and a proof signed by `identity` over the mesh and
 * this connection's nonce, then `over` on top (to forge or break fields).
 */
export function joinPayload(
  socket: Socket,
  fields: { mesh: string; token: string; capabilities: unknown },
  identity: PeerIdentity = generateIdentity(),
  over: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    ...fields,
    publicKey: toBase64url(identity.publicKey),
    proof: signJoinProof(identity, fields.mesh, nonceOf(socket)),
    ...over,
  }
}

/** Disconnects every test client and waits until the server has let go of them all. */
export async function closeClients(server: SignalServer): Promise<void> {
  for (const s of clients.splice(0)) s.disconnect()
  for (const mesh of server.meshes.list()) {
    while (mesh.workers().length > 0) await once(mesh, 'peer-left')
  }
}

/** Emits with an ack and resolves with the reply. */
export function request<T = Record<string, unknown>>(
  socket: Socket,
  event: string,
  ...args: unknown[]
): Promise<T> {
  return socket.timeout(5000).emitWithAck(event, ...args) as Promise<T>
}

/** Resolves with the next `event` the socket receives (optionally the first matching `accept`). */
export function next<T = unknown>(
  socket: Socket,
  event: string,
  accept: (v: T) => boolean = () => true,
): Promise<T> {
  return new Promise((resolve) => {
    const handler = (v: T) => {
      if (!accept(v)) return
      socket.off(event, handler)
      resolve(v)
    }
    socket.on(event, handler)
  })
}

export const GIB = 2 ** 30

export function caps(name = 'w', memoryBytes = GIB, layerStepsPerSec = 1000) {
  return { backend: 'cpu', memoryBytes, layerStepsPerSec, name }
}

export interface Worker {
  socket: Socket
  peerId: string
  identity: PeerIdentity
  /** Plans this worker received, in order. */
  plans: PlanMessage[]
}

/** Connects and joins; resolves once the worker has its id and its first plan. */
export async function joinWorker(
  server: SignalServer,
  opts: {
    mesh?: string
    token?: string
    name?: string
    memoryBytes?: number
    layerStepsPerSec?: number
    /** Default: a fresh identity. */
    identity?: PeerIdentity
  } = {},
): Promise<Worker> {
  const socket = await connect(server)
  const identity = opts.identity ?? generateIdentity()
  const plans: PlanMessage[] = []
  socket.on('plan', (p: PlanMessage) => plans.push(p))
  const firstPlan = next(socket, 'plan')
  const fields = {
    mesh: opts.mesh ?? 'default',
    token: opts.token ?? '',
    capabilities: caps(opts.name, opts.memoryBytes, opts.layerStepsPerSec),
  }
  const ack = await request<JoinAck>(socket, 'join', joinPayload(socket, fields, identity))
  if (!ack.ok) throw new Error(`join failed: ${ack.error.code}`)
  await firstPlan
  return { socket, peerId: ack.peerId, identity, plans }
}

/** Resolves once `socket` disconnects. */
export function disconnected(socket: Socket): Promise<string> {
  if (socket.disconnected) return Promise.resolve('already')
  return new Promise((resolve) => socket.once('disconnect', (reason) => resolve(reason)))
}

/** The mesh `name` of an in-process server. */
export const meshOf = (s: SignalServer, name = 'default') => s.meshes.get(name) as Mesh

/** The worker ids a server's mesh lists, sorted. */
export const workerIds = (s: SignalServer) =>
  meshOf(s)
    .workers()
    .map((p) => p.id)
    .sort()

/** How many cluster payloads a server refused under `code` so far. */
export async function clusterRejected(s: SignalServer, code: string): Promise<number> {
  const metric = await s.metrics.clusterRejected.get()
  return metric.values.find((v) => v.labels.code === code)?.value ?? 0
}
