import { TransportError } from '../errors.js'
import { guard } from './guard.js'
import { PeerLink, type Waiter } from './peer-link.js'
import { parseSignal } from './signal-data.js'
import type { FrameChannel, Signaling, Transport } from './transport.js'

/** A STUN or TURN server, as RTCPeerConnection takes it (the signal server hands these out on join). */
export interface IceServer {
  readonly urls: string | readonly string[]
  readonly username?: string
  readonly credential?: string
}

export type IceTransportPolicy = 'all' | 'relay'

export interface WebRtcTransportInit {
  peerId: string
  /** STUN/TURN servers; none by default, which reaches peers on the same host or LAN only. */
  iceServers?: readonly IceServer[] | (() => readonly IceServer[])
  /**
   * 'relay' gathers TURN relay candidates only (every byte through the TURN server); default
   * 'all'. The server hands it out in the join ack so operators and tests can force relaying.
   */
  iceTransportPolicy?: IceTransportPolicy
  /** A connection not open this long after its dial (or the peer's offer) is abandoned; default 30 s. */
  dialTimeoutMs?: number
  /** waitForLow resolves once the data channel's queue is down to this; default 256 KiB. */
  bufferedAmountLowThreshold?: number
}

export interface WebRtcTransportComponents {
  signaling: Signaling
  /** RTCPeerConnection and friends for Node (see node-worker's nodeWrtc); undefined in browsers. */
  wrtc?: unknown
}

export interface WebRtcTransport extends Transport {
  /** Malformed signaling payloads, which are otherwise ignored. */
  onSignalError(handler: (err: TransportError, from: string) => void): () => void
}

export const DEFAULT_DIAL_TIMEOUT_MS = 30_000
const DEFAULT_LOW_THRESHOLD = 256 * 1024

/**
 * Direct peer channels over WebRTC via simple-peer: one ordered, reliable data channel per
 * peer pair, offers/answers/candidates relayed through `signaling` (trickle ICE).
 *
 * There is at most one connection per remote peer: dialing a peer we already have an open
 * channel with (whichever side dialed) returns that channel. Renegotiation is never needed for
 * a data-only connection, so an offer from a peer we are connected to means it reconnected:
 * the old channel closes and the new one is announced through onIncoming.
 */
export function createWebRtcTransport(
  init: WebRtcTransportInit,
  components: WebRtcTransportComponents,
): WebRtcTransport {
  const { peerId } = init
  if (!isPeerId(peerId))
    throw new TransportError('ERR_TRANSPORT_OPTIONS', 'peerId must be a string of 1..64 characters')
  const dialTimeoutMs = init.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS
  if (!(Number.isFinite(dialTimeoutMs) && dialTimeoutMs > 0)) {
    throw new TransportError(
      'ERR_TRANSPORT_OPTIONS',
      `dialTimeoutMs must be > 0, got ${String(dialTimeoutMs)}`,
    )
  }
  const lowThreshold = init.bufferedAmountLowThreshold ?? DEFAULT_LOW_THRESHOLD
  if (!(Number.isSafeInteger(lowThreshold) && lowThreshold >= 0)) {
    throw new TransportError('ERR_TRANSPORT_OPTIONS', `bufferedAmountLowThreshold must be an integer >= 0`)
  }
  const policy = init.iceTransportPolicy ?? 'all'
  if (policy !== 'all' && policy !== 'relay') {
    throw new TransportError('ERR_TRANSPORT_OPTIONS', `iceTransportPolicy must be 'all' or 'relay'`)
  }
  const { signaling, wrtc } = components
  // Built per connection: a function yields fresh (time-limited) TURN credentials each time.
  const peerOptions = (): Record<string, unknown> => {
    const servers = typeof init.iceServers === 'function' ? init.iceServers() : (init.iceServers ?? [])
    // simple-peer mutates what it is given; copy so the caller's servers stay as they were.
    const iceServers = servers.map((s) => ({
      urls: typeof s.urls === 'string' ? s.urls : [...s.urls],
      ...(s.username === undefined ? {} : { username: s.username }),
      ...(s.credential === undefined ? {} : { credential: s.credential }),
    }))
    return {
      config: { iceServers, ...(policy === 'relay' ? { iceTransportPolicy: 'relay' } : {}) },
      ...(wrtc === undefined ? {} : { wrtc }),
    }
  }
  const links = new Map<string, PeerLink>()
  const incomingHandlers = new Set<(from: string, channel: FrameChannel) => void>()
  const errorHandlers = new Set<(err: TransportError, from: string) => void>()
  let closed = false

  const report = (err: TransportError, from: string): void => {
    for (const handler of errorHandlers) guard(() => handler(err, from))
  }

  const open = (remote: string, initiator: boolean, waiters?: Set<Waiter>): PeerLink => {
    const link = new PeerLink({
      remote,
      initiator,
      peerOptions: peerOptions(),
      lowThreshold,
      timeoutMs: dialTimeoutMs,
      send: (data) => signaling.send(remote, data),
      onOpen: (l, dialers) => {
        if (dialers.length > 0) for (const w of dialers) w.resolve(l.channel)
        else for (const handler of incomingHandlers) guard(() => handler(remote, l.channel))
      },
      onGone: (l) => {
        if (links.get(remote) === l) links.delete(remote)
      },
    })
    if (waiters !== undefined) link.waiters = waiters
    links.set(remote, link)
    return link
  }

  const deliver = (link: PeerLink, signal: Record<string, unknown>): void => {
    try {
      link.signal(signal)
    } catch (cause) {
      // simple-peer throws once destroyed, the polyfill on some SDPs it cannot apply. Either way
      // this link cannot go on, and waiting would only turn the failure into a timeout.
      const err = new TransportError('ERR_SIGNAL_INVALID', `cannot apply signal: ${String(cause)}`, { cause })
      report(err, link.remote)
      if (!link.connected) link.fail(new TransportError('ERR_DIAL_FAILED', err.message, { cause }))
    }
  }

  const onSignal = (from: unknown, data: unknown): void => {
    if (closed) return
    if (!isPeerId(from) || from === peerId) {
      const shown = typeof from === 'string' ? from.slice(0, 64) : typeof from
      report(new TransportError('ERR_SIGNAL_INVALID', 'signal from an invalid peer id'), shown)
      return
    }
    let signal: ReturnType<typeof parseSignal>
    try {
      signal = parseSignal(data)
    } catch (err) {
      report(err as TransportError, from)
      return
    }
    if (signal.type === 'renegotiate' || signal.type === 'transceiverRequest') return
    const link = links.get(from)
    if (signal.type !== 'offer') {
      // Candidates that trail a closed connection are normal; there is nothing to give them to.
      if (link !== undefined) deliver(link, signal)
      return
    }
    let waiters: Set<Waiter> | undefined
    if (link?.initiator && !link.connected) {
      // Both sides dialed at once: the smaller id stays initiator, the other answers and hands its dials over.
      if (peerId < from) return
      waiters = link.waiters
      link.waiters = new Set()
      link.drop()
    } else if (link !== undefined) {
      link.drop(new TransportError('ERR_CHANNEL_CLOSED', `peer ${from} reconnected`))
    }
    let fresh: PeerLink
    try {
      fresh = open(from, false, waiters)
    } catch (cause) {
      const err = new TransportError('ERR_DIAL_FAILED', `cannot answer ${from}: ${String(cause)}`, { cause })
      for (const w of waiters ?? []) w.reject(err)
      report(err, from)
      return
    }
    deliver(fresh, signal)
  }

  const unsubscribe = signaling.onSignal(onSignal)

  return {
    peerId,
    dial(to: string, signal?: AbortSignal): Promise<FrameChannel> {
      return new Promise<FrameChannel>((resolve, reject) => {
        if (closed) return reject(new TransportError('ERR_DIAL_FAILED', 'transport is closed'))
        if (!isPeerId(to) || to === peerId) {
          return reject(
            new TransportError('ERR_DIAL_FAILED', `cannot dial ${JSON.stringify(String(to).slice(0, 64))}`),
          )
        }
        if (signal?.aborted) return reject(signal.reason)
        let link = links.get(to)
        if (link?.connected && !link.channel.closed) return resolve(link.channel)
        if (link === undefined || link.connected) {
          link?.drop()
          try {
            link = open(to, true)
          } catch (cause) {
            return reject(
              new TransportError('ERR_DIAL_FAILED', `cannot dial ${to}: ${String(cause)}`, { cause }),
            )
          }
        }
        const onAbort = (): void => {
          // The waiter may have moved to another link (simultaneous dials), so look it up again.
          const current = links.get(to)
          current?.waiters.delete(waiter)
          reject(signal?.reason)
          if (current?.initiator && !current.connected && current.waiters.size === 0) current.drop()
        }
        const waiter: Waiter = {
          resolve: (channel) => {
            signal?.removeEventListener('abort', onAbort)
            resolve(channel)
          },
          reject: (err) => {
            signal?.removeEventListener('abort', onAbort)
            reject(err)
          },
        }
        link.waiters.add(waiter)
        signal?.addEventListener('abort', onAbort, { once: true })
      })
    },
    onIncoming(handler: (from: string, channel: FrameChannel) => void): () => void {
      incomingHandlers.add(handler)
      return () => incomingHandlers.delete(handler)
    },
    onSignalError(handler: (err: TransportError, from: string) => void): () => void {
      errorHandlers.add(handler)
      return () => errorHandlers.delete(handler)
    },
    async close(): Promise<void> {
      if (closed) return
      closed = true
      unsubscribe()
      incomingHandlers.clear()
      const all = [...links.values()]
      for (const link of all) link.fail(new TransportError('ERR_DIAL_FAILED', 'transport closed'))
      await Promise.all(all.map((l) => l.gone))
    },
  }
}

function isPeerId(id: unknown): id is string {
  return typeof id === 'string' && id.length > 0 && id.length <= 64
}
