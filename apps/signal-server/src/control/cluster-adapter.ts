import { createAdapter } from '@socket.io/redis-streams-adapter'
import { ClusterError } from '../errors.js'
import type { RedisClient } from './cluster-store.js'

/** The only events servers send each other with serverSideEmit (mesh-cluster.ts, cluster.ts). */
export const CLUSTER_EVENTS = { hint: 'butterfly:cluster-hint', signal: 'butterfly:cluster-signal' } as const
const OURS: ReadonlySet<unknown> = new Set(Object.values(CLUSTER_EVENTS))

// socket.io-adapter's MessageType: which messages carry data, and serverSideEmit's number.
const DATA_TYPES = new Set([3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
const SERVER_SIDE_EMIT = 9
const MAX_TYPE = 13

type AdapterFactory = ReturnType<typeof createAdapter>
type Adapter = ReturnType<AdapterFactory> & { onMessage(message: unknown, offset?: string): void }

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Why a message read from Redis is not one a socket.io server sent; undefined when it is. */
function malformed(message: unknown): string | undefined {
  if (!isRecord(message)) return 'not an object'
  if (typeof message.uid !== 'string' || typeof message.nsp !== 'string') return 'no uid or nsp'
  const { type, data } = message
  if (typeof type !== 'number' || !Number.isInteger(type) || type < 1 || type > MAX_TYPE)
    return 'unknown type'
  if (DATA_TYPES.has(type) && !isRecord(data)) return 'no data'
  if (type === SERVER_SIDE_EMIT) {
    const packet = (data as Record<string, unknown>).packet
    // Anything else would reach io's own listeners ('connection' among them) with forged arguments.
    if (!Array.isArray(packet) || !OURS.has(packet[0])) return 'a server-side event that is not ours'
  }
  return undefined
}

/**
 * socket.io's Redis Streams adapter, with every message from Redis checked before it acts. Left
 * alone, an entry that throws inside the adapter is never stepped over: the stream reader keeps
 * its offset and reads that entry again, forever, and no later broadcast gets through. Refused
 * ones are reported as ERR_CLUSTER_PAYLOAD.
 */
export function hardenedAdapter(
  redis: RedisClient,
  options: { readonly streamName: string; readonly channelPrefix: string; readonly blockTimeInMs?: number },
  onRejected: (err: ClusterError) => void,
): AdapterFactory {
  // The adapter publishes server-side events and drops the promise: one rejected while Redis is
  // away (or at shutdown) would be an unhandled rejection, which ends a Node process.
  const publish = redis.publish.bind(redis) as (...args: unknown[]) => Promise<number>
  Object.assign(redis, {
    publish: (...args: unknown[]) => {
      const sent = publish(...args)
      sent.catch((err: unknown) =>
        onRejected(new ClusterError('ERR_REDIS', `publish failed: ${String(err)}`)),
      )
      return sent
    },
  })
  const factory = createAdapter(redis, { ...options, maxLen: 10_000 })
  // socket.io calls it with `new`: a function (not an arrow) whose returned object stands in.
  return function hardened(nsp: Parameters<AdapterFactory>[0]) {
    const adapter = factory(nsp) as Adapter
    const onMessage = adapter.onMessage.bind(adapter)
    adapter.onMessage = (message: unknown, offset?: string) => {
      const why = malformed(message)
      if (why !== undefined) {
        onRejected(new ClusterError('ERR_CLUSTER_PAYLOAD', `socket.io adapter message refused: ${why}`))
        return
      }
      try {
        onMessage(message, offset)
      } catch (err) {
        onRejected(
          new ClusterError(
            'ERR_CLUSTER_PAYLOAD',
            `socket.io adapter message failed: ${(err as Error)?.message ?? err}`,
          ),
        )
      }
    }
    return adapter
  } as AdapterFactory
}
