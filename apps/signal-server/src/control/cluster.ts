import { randomBytes } from 'node:crypto'
import { ButterflyError, type SignalData } from '@butterfly/core'
import { createClient } from 'redis'
import type { Server } from 'socket.io'
import { ClusterError } from '../errors.js'
import { CLUSTER_EVENTS, hardenedAdapter } from './cluster-adapter.js'
import { type ClusterSignal, parseClusterSignal, parseHint } from './cluster-records.js'
import { ClusterSeal } from './cluster-seal.js'
import { ClusterStore, type RedisClient } from './cluster-store.js'
import type { JoinAdmission } from './join-admission.js'
import { MeshCluster } from './mesh-cluster.js'
import type { MeshRegistry } from './mesh-registry.js'
import { TokenShare } from './token-share.js'

/** How old a sealed message may be on arrival (clocks of the servers a little apart included). */
const MESSAGE_AGE_MS = 60_000

/** Signals held for a sync because their sender is not yet known here (all meshes). */
const MAX_HELD_SIGNALS = 1024

export interface ClusterInit {
  /** redis://[user:password@]host:port[/db] or rediss:// for TLS. */
  readonly url: string
  readonly io: Server
  readonly registry: MeshRegistry
  /** Per-peer join tokens to share with the other servers (see token-share.ts). */
  readonly admission?: JoinAdmission | undefined
  /** A server silent this long is dead and its peers leave; the heartbeat timeout. */
  readonly deadAfterMs: number
  /** How often each mesh syncs with Redis. Default 1000. */
  readonly syncMs?: number
  /** Key prefix, so several clusters can share one Redis. Default 'butterfly:'. */
  readonly keyPrefix?: string
  /**
   * The secret every server of the cluster shares (16 to 512 bytes): each value written to Redis
   * and each message between servers is sealed with it, and what is not sealed is refused.
   */
  readonly secret?: string | undefined
  readonly connectTimeoutMs?: number
  /**
   * How long a signal from a peer this server has not read yet waits for a sync to make it known
   * before it is refused. Default twice syncMs, within 1 to 5 s.
   */
  readonly holdSignalMs?: number
  readonly onRejected?: (err: ClusterError) => void
  readonly onError?: (err: unknown) => void
  readonly now?: () => number
}

export interface Cluster {
  /** This server's id among the cluster's servers (random per process). */
  readonly serverId: string
  /** Runs one sync of every mesh now (tests; a hint does the same). */
  sync(): Promise<void>
  /** Whether this server plans mesh `name`. */
  planning(name: string): boolean
  /** Releases the planning lease and removes this server's records; closes the Redis clients. */
  close(): Promise<void>
}

interface HeldSignal {
  readonly signal: ClusterSignal
  readonly until: number
}

/** Shows a Redis URL without its password. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '***'
    return u.toString()
  } catch {
    return '(unparsable URL)'
  }
}

async function connect(
  url: string,
  timeoutMs: number,
  onError: (err: unknown) => void,
  queueWhileDown: boolean,
): Promise<RedisClient> {
  const client: RedisClient = createClient({
    url,
    disableOfflineQueue: !queueWhileDown,
    socket: { connectTimeout: timeoutMs, reconnectStrategy: (retries) => Math.min(100 * 2 ** retries, 2000) },
  })
  client.on('error', onError)
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs)
      }),
    ])
  } catch (err) {
    client.destroy()
    throw new ClusterError(
      'ERR_REDIS',
      `cannot reach Redis at ${redactRedisUrl(url)}: ${(err as Error)?.message ?? err}`,
      { cause: err },
    )
  } finally {
    clearTimeout(timer)
  }
  return client
}

/**
 * Joins this server to the cluster on `url`: socket.io's Redis Streams adapter on `io`, and one
 * MeshCluster per mesh, synced once before this resolves (so the first join here already sees
 * the others' members and plan). Call before any peer joins.
 */
export async function startCluster(init: ClusterInit): Promise<Cluster> {
  const serverId = randomBytes(4).toString('hex')
  const prefix = init.keyPrefix ?? 'butterfly:'
  const syncMs = init.syncMs ?? 1000
  const onError = init.onError ?? (() => {})
  const onRejected = init.onRejected ?? (() => {})
  const timeoutMs = init.connectTimeoutMs ?? 5000
  const now = init.now ?? Date.now
  const seal = new ClusterSeal(init.secret)
  // Ours fails a command at once while Redis is down: a sync is retried next tick anyway, and
  // stale writes replayed on reconnect would undo newer ones. The adapter's must queue instead:
  // its stream reader loops on XREAD with no pause, and failing fast would spin it, starving the
  // event loop for as long as Redis is away.
  const redis = await connect(init.url, timeoutMs, onError, false)
  const adapterRedis = await connect(init.url, timeoutMs, onError, true).catch((err) => {
    redis.destroy()
    throw err
  })
  // The stream reader notices a close only when its blocking XREAD returns: 1 s rather than the
  // adapter's 5 s keeps a SIGTERM quick, for one idle read a second.
  const streams = {
    streamName: `${prefix}socket.io`,
    channelPrefix: `${prefix}socket.io`,
    blockTimeInMs: 1000,
  }
  init.io.adapter(hardenedAdapter(adapterRedis, streams, onRejected))
  const store = new ClusterStore(redis, prefix, seal, onRejected)
  // Messages carry their send time, and with a secret its MAC over the rest: a forged one does not
  // open, and a recorded one replayed later than MESSAGE_AGE_MS is stale.
  const emit = (event: string, payload: Record<string, unknown>) => {
    const body = { ...payload, at: now() }
    init.io.serverSideEmit(
      event,
      seal.sealed ? { ...body, mac: seal.mac(event, JSON.stringify(body)) } : body,
    )
  }
  const unsealed = (event: string, payload: unknown): ClusterError | undefined => {
    if (typeof payload !== 'object' || payload === null) return undefined // the parser refuses it
    const { mac, ...body } = payload as Record<string, unknown>
    if (!seal.check(event, JSON.stringify(body), mac)) {
      return new ClusterError('ERR_CLUSTER_FORGED', `a ${event} message has no valid seal`)
    }
    const at = body.at
    if (seal.sealed && !(typeof at === 'number' && Math.abs(now() - at) <= MESSAGE_AGE_MS)) {
      return new ClusterError('ERR_CLUSTER_STALE', `a ${event} message sent at ${String(at)} is too old`)
    }
    return undefined
  }
  const clusters = new Map<
    string,
    { cluster: MeshCluster; sync: () => Promise<void>; run: () => Promise<void>; held: HeldSignal[] }
  >()
  for (const mesh of init.registry.list()) {
    const cluster = new MeshCluster({
      serverId,
      store,
      sendSignal: (owner: string, from: string, to: string, data: SignalData) =>
        emit(CLUSTER_EVENTS.signal, { mesh: mesh.name, sender: serverId, owner, from, to, data }),
      hint: () => emit(CLUSTER_EVENTS.hint, { mesh: mesh.name, from: serverId }),
      livenessMs: Math.max(3 * syncMs, 500),
      deadAfterMs: init.deadAfterMs,
      leaseMs: Math.max(3 * syncMs, 500),
      onRejected,
      onError,
      ...(init.now ? { now: init.now } : {}),
    })
    cluster.attach(mesh)
    const held: HeldSignal[] = []
    // Every sync, on the timer, a hint or by hand, ends by delivering what it made deliverable.
    const sync = () => cluster.sync().finally(() => release(held))
    clusters.set(mesh.name, { cluster, sync, run: serialized(sync, onError), held })
  }

  const holdMs = init.holdSignalMs ?? Math.min(Math.max(2 * syncMs, 1000), 5000)
  let heldCount = 0
  const knownSender = (s: ClusterSignal) => init.registry.get(s.mesh)?.ownerOf(s.from) === s.sender
  const tryDeliver = (s: ClusterSignal) => {
    try {
      deliver(init.registry, s)
    } catch (err) {
      refuse(err)
    }
  }
  /** After each sync: delivers held signals whose sender it made known; refuses expired ones. */
  const release = (held: HeldSignal[]) => {
    const t = now()
    const keep = held.filter((h) => {
      if (!knownSender(h.signal) && t < h.until) return true
      heldCount--
      tryDeliver(h.signal)
      return false
    })
    held.splice(0, held.length, ...keep)
  }
  const shareTokens =
    init.admission?.tokens === undefined
      ? undefined
      : new TokenShare(store, serverId, init.admission, init.deadAfterMs * 4, onRejected, onError)
  const liveServers = () => [...new Set([...clusters.values()].flatMap(({ cluster }) => cluster.liveServers))]
  const syncTokens = serialized(async () => shareTokens?.sync(liveServers()), onError)
  const refuse = (err: unknown) =>
    onRejected(err instanceof ClusterError ? err : new ClusterError('ERR_CLUSTER_PAYLOAD', String(err)))
  init.io.on(CLUSTER_EVENTS.hint, (payload: unknown) => {
    try {
      const forged = unsealed(CLUSTER_EVENTS.hint, payload)
      if (forged !== undefined) throw forged
      const hint = parseHint(payload)
      if (hint.from !== serverId) {
        void clusters.get(hint.mesh)?.run()
        void syncTokens()
      }
    } catch (err) {
      refuse(err)
    }
  })
  init.io.on(CLUSTER_EVENTS.signal, (payload: unknown) => {
    let s: ClusterSignal
    try {
      const forged = unsealed(CLUSTER_EVENTS.signal, payload)
      if (forged !== undefined) throw forged
      s = parseClusterSignal(payload)
    } catch (err) {
      refuse(err)
      return
    }
    if (s.owner !== serverId) return // for another server (serverSideEmit reaches every one)
    const entry = clusters.get(s.mesh)
    // The sender's server writes its member before relaying, but through another connection, and
    // this server may not have read it yet (a gateway dials as soon as it joins): hold the signal
    // for a sync or two rather than drop it and leave the dial to time out. Bounded, so forgeries
    // cannot pile up; one that is still unknown when its time is up is refused.
    if (entry !== undefined && !knownSender(s) && heldCount < MAX_HELD_SIGNALS) {
      heldCount++
      entry.held.push({ signal: s, until: now() + holdMs })
      void entry.run()
      return
    }
    tryDeliver(s)
  })

  await Promise.all([...clusters.values()].map(({ sync }) => sync()))
  await syncTokens()
  const timer = setInterval(() => {
    for (const { run } of clusters.values()) void run()
    void syncTokens()
  }, syncMs)
  timer.unref()
  let closing: Promise<void> | undefined
  return {
    serverId,
    sync: async () => {
      await Promise.all([...clusters.values()].map(({ sync }) => sync()))
      await shareTokens?.sync(liveServers())
    },
    planning: (name) => clusters.get(name)?.cluster.planning ?? false,
    close: () => {
      closing ??= (async () => {
        clearInterval(timer)
        await Promise.allSettled([...clusters.values()].map(({ cluster }) => cluster.close(true)))
        await store.leave(serverId, [...clusters.keys()]).catch(onError)
        redis.destroy()
        // Stops the adapter's stream reader and subscriber (they are its own copies of the client).
        init.io.of('/').adapter.close()
        adapterRedis.destroy()
      })()
      return closing
    },
  }
}

/** A signal for one of this server's members; anything else is refused (ERR_CLUSTER_SESSION). */
function deliver(registry: MeshRegistry, s: ClusterSignal): void {
  const mesh = registry.get(s.mesh)
  if (mesh === undefined) throw new ClusterError('ERR_CLUSTER_PAYLOAD', `no mesh "${s.mesh}" here`)
  if (!mesh.isLocal(s.to)) throw new ClusterError('ERR_CLUSTER_SESSION', `${s.to} is not connected here`)
  if (mesh.ownerOf(s.from) !== s.sender) {
    throw new ClusterError('ERR_CLUSTER_SESSION', `${s.from} is not a member of server ${s.sender}`)
  }
  try {
    mesh.relaySignal(s.from, s.to, s.data)
  } catch (err) {
    if (err instanceof ButterflyError) throw new ClusterError('ERR_CLUSTER_SESSION', err.message)
    throw err
  }
}

/**
 * Runs `fn` one at a time. A call while it runs schedules one more run after it; the promise a
 * call returns settles when a run that began after the call has ended.
 */
function serialized(fn: () => Promise<void>, onError: (err: unknown) => void): () => Promise<void> {
  let running: Promise<void> | undefined
  let queued: Promise<void> | undefined
  const begin = (): Promise<void> => {
    const run = fn()
      .catch(onError)
      .finally(() => {
        if (running === run) running = undefined
      })
    running = run
    return run
  }
  return () => {
    if (queued !== undefined) return queued
    if (running === undefined) return begin()
    queued = running.then(() => {
      queued = undefined
      return begin()
    })
    return queued
  }
}
