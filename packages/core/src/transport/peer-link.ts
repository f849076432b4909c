// simple-peer's npm entry needs Node's Buffer and streams (polyfills in a browser) and its
// @types pull Node's types into core. The package's self-contained browser build runs in both
// Node and browsers and has no types, so we describe the little we use in peer-channel.ts.
// @ts-expect-error no declaration file for the browser build
import SimplePeerBuild from 'simple-peer/simplepeer.min.js'
import { TransportError } from '../errors.js'
import { PeerChannel, type SimplePeerLike } from './peer-channel.js'
import type { FrameChannel } from './transport.js'

type PeerConstructor = new (opts: Record<string, unknown>) => SimplePeerLike
const SimplePeer = SimplePeerBuild as PeerConstructor

/** A dial waiting for a link to open. */
export interface Waiter {
  resolve(channel: FrameChannel): void
  reject(err: unknown): void
}

export interface PeerLinkInit {
  remote: string
  initiator: boolean
  /** simple-peer's `config` (ICE servers) and, in Node, `wrtc`. */
  peerOptions: Record<string, unknown>
  lowThreshold: number
  timeoutMs: number
  /** Relays one of our signals to the remote peer; throwing fails the link. */
  send(data: Record<string, unknown>): void
  /** The data channel is open; `dialers` were waiting for it (none for an unexpected incoming link). */
  onOpen(link: PeerLink, dialers: Waiter[]): void
  /** The link is over (closed, failed or dropped); called once. */
  onGone(link: PeerLink): void
}

/** One simple-peer connection to one remote peer, from creation until it is gone. */
export class PeerLink {
  readonly remote: string
  readonly initiator: boolean
  readonly channel: PeerChannel
  /** Resolves once simple-peer has released the connection. */
  readonly gone: Promise<void>
  /** Dials waiting for this link; they move to a replacement link when simultaneous dials cross. */
  waiters = new Set<Waiter>()
  private readonly peer: SimplePeerLike
  private readonly init: PeerLinkInit
  private timer: ReturnType<typeof setTimeout> | undefined
  private error: Error | undefined
  private isOpen = false
  private dropped = false
  /** Whether our candidates may go out yet (see relayOrHold). */
  private released = false
  private readonly held: Record<string, unknown>[] = []

  constructor(init: PeerLinkInit) {
    this.init = init
    this.remote = init.remote
    this.initiator = init.initiator
    const peer = new SimplePeer({
      ...init.peerOptions,
      initiator: init.initiator,
      trickle: true,
      channelConfig: { ordered: true },
    })
    this.peer = peer
    this.channel = new PeerChannel(peer, init.lowThreshold)
    let released = (): void => {}
    this.gone = new Promise<void>((resolve) => {
      released = resolve
    })
    this.timer = setTimeout(() => {
      this.fail(
        new TransportError('ERR_DIAL_TIMEOUT', `no connection to ${init.remote} after ${init.timeoutMs} ms`),
      )
    }, init.timeoutMs)
    peer.on('signal', (data) => this.relayOrHold(data))
    peer.on('connect', () => this.opened())
    peer.on('error', (err) => {
      this.error = err
    })
    peer.on('close', () => {
      this.closed()
      released()
    })
  }

  get connected(): boolean {
    return this.isOpen
  }

  /** Hands a validated signal from the remote peer to simple-peer; throws if it cannot apply it. */
  signal(data: Record<string, unknown>): void {
    this.peer.signal(data)
    if (this.initiator && data.type === 'answer') this.release()
  }

  /** Rejects the waiting dials and tears the link down. */
  fail(err: TransportError): void {
    const waiters = [...this.waiters]
    this.waiters.clear()
    for (const w of waiters) w.reject(err)
    this.drop()
  }

  /** Tears the link down; the channel, if someone holds it, closes with `reason`. */
  drop(reason?: Error): void {
    if (this.dropped) return
    this.dropped = true
    clearTimeout(this.timer)
    this.channel.markClosed(reason)
    try {
      this.peer.destroy()
    } catch {
      // Already destroyed.
    }
    this.init.onGone(this)
  }

  /**
   * Our candidates wait for the session description they belong to: the answerer's until its
   * answer is out (the offerer drops signals from peers it has no link with), the offerer's
   * until the answer is in. Otherwise the answerer's connectivity checks can complete before
   * the offerer knows the answerer's DTLS fingerprint, which makes libdatachannel fail the
   * connection ("Got a remote candidate without ICE transport"): on loopback, 1 to 13 connects
   * in 30 failed that way before, none of 180 since.
   */
  private relayOrHold(data: Record<string, unknown>): void {
    if (this.dropped) return
    if (!this.released && data.type === 'candidate') {
      this.held.push(data)
      return
    }
    if (data.type === 'offer' && typeof data.sdp === 'string') {
      // simple-peer sends the connection's current description, which already lists the
      // candidates gathered so far; they follow as trickled candidates anyway, at the right time.
      this.relay({ ...data, sdp: data.sdp.replace(/^a=(candidate|end-of-candidates)\b.*(\r?\n|$)/gm, '') })
      return
    }
    this.relay(data)
    if (!this.initiator && data.type === 'answer') this.release()
  }

  private release(): void {
    if (this.released) return
    this.released = true
    for (const c of this.held.splice(0)) if (!this.dropped) this.relay(c)
  }

  private relay(data: Record<string, unknown>): void {
    try {
      this.init.send(data)
    } catch (cause) {
      this.fail(
        new TransportError('ERR_DIAL_FAILED', `cannot signal ${this.remote}: ${String(cause)}`, { cause }),
      )
    }
  }

  private opened(): void {
    if (this.dropped) return
    this.isOpen = true
    clearTimeout(this.timer)
    this.channel.opened()
    const dialers = [...this.waiters]
    this.waiters.clear()
    this.init.onOpen(this, dialers)
  }

  private closed(): void {
    const why = this.error === undefined ? '' : `: ${this.error.message}`
    const cause = this.error === undefined ? undefined : { cause: this.error }
    const err = new TransportError(
      'ERR_DIAL_FAILED',
      `connection to ${this.remote} closed before it opened${why}`,
      cause,
    )
    const waiters = [...this.waiters]
    this.waiters.clear()
    for (const w of waiters) w.reject(err)
    const reason =
      this.error === undefined
        ? undefined
        : new TransportError('ERR_CHANNEL_CLOSED', `connection to ${this.remote} failed${why}`, cause)
    this.channel.markClosed(reason)
    if (!this.dropped) {
      this.dropped = true
      clearTimeout(this.timer)
      this.init.onGone(this)
    }
  }
}
