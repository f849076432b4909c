// simple-peer's npm entry needs Node's Buffer and streams (polyfills in a browser) and its
// @types pull Node's types into core. The package's self-contained browser build runs in both
// Node and browsers and has no types, so we describe the little we use in peer-channel.ts.
// @ts-expect-error no declaration file for the browser build
import SimplePeerBuild from 'simple-peer/simplepeer.min.js'
import { TransportError } from '../errors.js'
import type { IceServer } from '../mesh/control-protocol.js'
import { PeerChannel, type SimplePeerLike } from './peer-channel.js'
import { parseSignal } from './signal-data.js'
import type { FrameChannel, Signaling, Transport } from './transport.js'

export interface WebRtcTransportInit {
  peerId: string
  /** STUN/TURN servers; none by default, which reaches peers on the same host or LAN only. */
  iceServers?: readonly IceServer[]
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

type PeerConstructor = new (opts: Record<string, unknown>) => SimplePeerLike
const SimplePeer = SimplePeerBuild as PeerConstructor

interface Waiter {
  resolve(channel: FrameChannel): void
  reject(err: unknown): void
}

interface Entry {
  readonly remote: string
  readonly initiator: boolean
  readonly peer: SimplePeerLike
  readonly channel: PeerChannel
  readonly gone: Promise<void>
  connected: boolean
  /** Dials waiting for this connection; when none, an opened connection is announced via onIncoming. */
  waiters: Set<Waiter>
  timer: ReturnType<typeof setTimeout> | undefined
  error: Error | undefined
}

export const DEFAULT_DIAL_TIMEOUT_MS = 30_000
const DEFAULT_LOW_THRESHOLD = 256 * 1024

/**
 * Direct peer channels over WebRTC via simple-peer: one ordered, reliable data channel per
 * peer pair, offers/answers/candidates relayed through `signaling` (trickle ICE).
 *
 * Renegotiation is never needed for a data-only connection, so an offer from a peer we are
 * connected to means it reconnected: the old channel closes and a new one is announced.
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
  // simple-peer mutates what it is given; copy so the caller's servers stay as they were.
  const iceServers = (init.iceServers ?? []).map((s) => ({
    urls: typeof s.urls === 'string' ? s.urls : [...s.urls],
    ...(s.username === undefined ? {} : { username: s.username }),
    ...(s.credential === undefined ? {} : { credential: s.credential }),
  }))
  const { signaling, wrtc } = components
  const entries = new Map<string, Entry>()
  const incomingHandlers = new Set<(from: string, channel: FrameChannel) => void>()
  const errorHandlers = new Set<(err: TransportError, from: string) => void>()
  let closed = false

  const report = (err: TransportError, from: string): void => {
    for (const handler of errorHandlers) guard(() => handler(err, from))
  }

  const drop = (entry: Entry, reason?: Error): void => {
    clearTimeout(entry.timer)
    if (entries.get(entry.remote) === entry) entries.delete(entry.remote)
    entry.channel.markClosed(reason)
    try {
      entry.peer.destroy()
    } catch {
      // Already destroyed.
    }
  }

  const fail = (entry: Entry, err: TransportError): void => {
    const waiters = [...entry.waiters]
    entry.waiters.clear()
    for (const w of waiters) w.reject(err)
    drop(entry)
  }

  const open = (remote: string, initiator: boolean, waiters = new Set<Waiter>()): Entry => {
    const peer = new SimplePeer({
      initiator,
      trickle: true,
      config: { iceServers },
      channelConfig: { ordered: true },
      ...(wrtc === undefined ? {} : { wrtc }),
    })
    let onGone = (): void => {}
    const gone = new Promise<void>((resolve) => {
      onGone = resolve
    })
    const channel = new PeerChannel(peer, lowThreshold)
    const entry: Entry = {
      remote,
      initiator,
      peer,
      channel,
      gone,
      connected: false,
      waiters,
      timer: undefined,
      error: undefined,
    }
    const current = (): boolean => entries.get(remote) === entry
    entries.set(remote, entry)
    entry.timer = setTimeout(() => {
      fail(
        entry,
        new TransportError('ERR_DIAL_TIMEOUT', `no connection to ${remote} after ${dialTimeoutMs} ms`),
      )
    }, dialTimeoutMs)

    // Candidates can be gathered before simple-peer emits the offer or answer they belong to;
    // the other side drops signals from peers it has no connection with, so keep them in order.
    let described = false
    const held: Record<string, unknown>[] = []
    const relay = (data: Record<string, unknown>): void => {
      try {
        signaling.send(remote, data)
      } catch (cause) {
        fail(
          entry,
          new TransportError('ERR_DIAL_FAILED', `cannot signal ${remote}: ${String(cause)}`, { cause }),
        )
      }
    }
    peer.on('signal', (data) => {
      if (!current()) return
      if (!described && data.type === 'candidate') {
        held.push(data)
        return
      }
      relay(data)
      if (data.type === 'offer' || data.type === 'answer') {
        described = true
        for (const c of held.splice(0)) if (current()) relay(c)
      }
    })
    peer.on('connect', () => {
      if (!current()) return
      entry.connected = true
      clearTimeout(entry.timer)
      channel.opened()
      const dialers = [...entry.waiters]
      entry.waiters.clear()
      if (dialers.length > 0) for (const w of dialers) w.resolve(channel)
      else for (const handler of incomingHandlers) guard(() => handler(remote, channel))
    })
    peer.on('error', (err) => {
      entry.error = err
    })
    peer.on('close', () => {
      clearTimeout(entry.timer)
      if (current()) entries.delete(remote)
      const why = entry.error === undefined ? '' : `: ${entry.error.message}`
      const cause = entry.error === undefined ? undefined : { cause: entry.error }
      const dialers = [...entry.waiters]
      entry.waiters.clear()
      for (const w of dialers) {
        w.reject(
          new TransportError(
            'ERR_DIAL_FAILED',
            `connection to ${remote} closed before it opened${why}`,
            cause,
          ),
        )
      }
      channel.markClosed(
        entry.error === undefined
          ? undefined
          : new TransportError('ERR_CHANNEL_CLOSED', `connection to ${remote} failed${why}`, cause),
      )
      onGone()
    })
    return entry
  }

  const deliver = (entry: Entry, signal: unknown): void => {
    try {
      entry.peer.signal(signal)
    } catch (cause) {
      // node-datachannel's polyfill throws synchronously on an SDP it cannot apply; simple-peer
      // throws once destroyed. Either way this connection cannot go on, and waiting would only
      // turn the failure into a timeout.
      const err = new TransportError(
        'ERR_SIGNAL_INVALID',
        `cannot apply signal from ${entry.remote}: ${String(cause)}`,
        {
          cause,
        },
      )
      report(err, entry.remote)
      if (!entry.connected) fail(entry, new TransportError('ERR_DIAL_FAILED', err.message, { cause }))
    }
  }

  const onSignal = (from: unknown, data: unknown): void => {
    if (closed) return
    if (!isPeerId(from) || from === peerId) {
      report(
        new TransportError('ERR_SIGNAL_INVALID', 'signal from an invalid peer id'),
        String(from).slice(0, 64),
      )
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
    const entry = entries.get(from)
    if (signal.type !== 'offer') {
      // Candidates that trail a closed connection are normal; there is nothing to give them to.
      if (entry !== undefined) deliver(entry, signal)
      return
    }
    let waiters: Set<Waiter> | undefined
    if (entry?.initiator && !entry.connected) {
      // Both sides dialed at once: the smaller id stays initiator, the other answers and hands its dials over.
      if (peerId < from) return
      waiters = entry.waiters
      entry.waiters = new Set()
      drop(entry)
    } else if (entry !== undefined) {
      drop(entry, new TransportError('ERR_CHANNEL_CLOSED', `peer ${from} reconnected`))
    }
    let fresh: Entry
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
        let entry = entries.get(to)
        if (entry?.connected && !entry.channel.closed) return resolve(entry.channel)
        if (entry === undefined || entry.connected) {
          if (entry !== undefined) drop(entry)
          try {
            entry = open(to, true)
          } catch (cause) {
            return reject(
              new TransportError('ERR_DIAL_FAILED', `cannot dial ${to}: ${String(cause)}`, { cause }),
            )
          }
        }
        const onAbort = (): void => {
          // The waiter may have moved to another entry (simultaneous dials), so look it up again.
          const current = entries.get(to)
          current?.waiters.delete(waiter)
          reject(signal?.reason)
          if (current?.initiator && !current.connected && current.waiters.size === 0) drop(current)
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
        entry.waiters.add(waiter)
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
      const all = [...entries.values()]
      for (const entry of all) fail(entry, new TransportError('ERR_DIAL_FAILED', 'transport closed'))
      await Promise.all(all.map((e) => e.gone))
    },
  }
}

function isPeerId(id: unknown): id is string {
  return typeof id === 'string' && id.length > 0 && id.length <= 64
}

function guard(fn: () => void): void {
  try {
    fn()
  } catch (err) {
    // A throwing handler is a bug above us; surface it without breaking signaling or the peer.
    setTimeout(() => {
      throw err
    }, 0)
  }
}
