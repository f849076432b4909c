import { TransportError, WireProtocolError } from '../errors.js'
import { guard } from './guard.js'
import type { FrameChannel, SignalData, Signaling, Transport } from './transport.js'

/**
 * In-process transport for tests that need no sockets. It keeps the properties code above it
 * relies on from a real data channel: frames are copied, arrive asynchronously and in order,
 * bufferedAmount grows on send and drains on later ticks, and an oversized frame closes the
 * channel the way node-datachannel and wrtc do.
 */

export interface MemoryNetworkOptions {
  /** A frame larger than this closes the channel; default 256 KiB, as SCTP peers usually negotiate. */
  maxMessageBytes?: number
  /** Bytes a channel hands to its peer per timer tick; default 256 KiB. Lower it to make backpressure bite. */
  drainBytesPerTick?: number
  /** waitForLow resolves once bufferedAmount is at or below this; default 256 KiB. */
  bufferedAmountLowThreshold?: number
}

interface Node {
  readonly channels: Set<MemoryChannel>
  readonly incoming: Set<(from: string, channel: FrameChannel) => void>
}

/** The wire between memory transports: a peer id registry plus shared channel settings. */
export class MemoryNetwork {
  readonly maxMessageBytes: number
  readonly drainBytesPerTick: number
  readonly bufferedAmountLowThreshold: number
  private readonly nodes = new Map<string, Node>()

  constructor(opts: MemoryNetworkOptions = {}) {
    this.maxMessageBytes = positive('maxMessageBytes', opts.maxMessageBytes ?? 256 * 1024)
    this.drainBytesPerTick = positive('drainBytesPerTick', opts.drainBytesPerTick ?? 256 * 1024)
    this.bufferedAmountLowThreshold = positive(
      'bufferedAmountLowThreshold',
      opts.bufferedAmountLowThreshold ?? 256 * 1024,
      0,
    )
  }

  get peerIds(): string[] {
    return [...this.nodes.keys()]
  }

  /** @internal */
  join(peerId: string, node: Node): void {
    if (typeof peerId !== 'string' || peerId.length === 0 || peerId.length > 64) {
      throw new TransportError('ERR_TRANSPORT_OPTIONS', 'peerId must be a string of 1..64 characters')
    }
    if (this.nodes.has(peerId))
      throw new TransportError('ERR_TRANSPORT_OPTIONS', `peer ${peerId} is already on this network`)
    this.nodes.set(peerId, node)
  }

  /** @internal */
  leave(peerId: string): void {
    this.nodes.delete(peerId)
  }

  /** @internal */
  find(peerId: string): Node | undefined {
    return this.nodes.get(peerId)
  }
}

export function createMemoryTransport(
  init: { peerId: string },
  components: { network: MemoryNetwork },
): Transport {
  const { network } = components
  const peerId = init.peerId
  const node: Node = { channels: new Set(), incoming: new Set() }
  network.join(peerId, node)
  let closed = false

  return {
    peerId,
    dial(to: string, signal?: AbortSignal): Promise<FrameChannel> {
      return new Promise<FrameChannel>((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason)
        const onAbort = (): void => {
          clearTimeout(timer)
          reject(signal?.reason)
        }
        // A real dial needs a round trip; resolving on a later tick keeps callers honest about that.
        const timer = setTimeout(() => {
          signal?.removeEventListener('abort', onAbort)
          const remote = to === peerId ? undefined : network.find(to)
          if (closed || remote === undefined) {
            reject(new TransportError('ERR_DIAL_FAILED', `cannot reach peer ${String(to)} from ${peerId}`))
            return
          }
          const [local, far] = MemoryChannel.pair(network, node, remote)
          resolve(local)
          for (const handler of remote.incoming) handler(peerId, far)
        }, 0)
        signal?.addEventListener('abort', onAbort, { once: true })
      })
    },
    onIncoming(handler: (from: string, channel: FrameChannel) => void): () => void {
      node.incoming.add(handler)
      return () => node.incoming.delete(handler)
    },
    async close(): Promise<void> {
      if (closed) return
      closed = true
      network.leave(peerId)
      node.incoming.clear()
      for (const c of [...node.channels]) c.close()
    },
  }
}

type Item = Uint8Array | { readonly close: Error | undefined }

class MemoryChannel implements FrameChannel {
  private remote!: MemoryChannel
  private readonly outbox: Item[] = []
  private outboxBytes = 0
  private draining = false
  /** Frames that arrived before anyone listened, as a data channel's event queue would hold them. */
  private readonly inbox: Item[] = []
  private readonly frameHandlers = new Set<(frame: Uint8Array) => void>()
  private readonly closeHandlers = new Set<(reason?: Error) => void>()
  private readonly lowWaiters = new Set<() => void>()
  private isClosed = false

  private constructor(
    private readonly network: MemoryNetwork,
    private readonly owner: Node,
  ) {
    owner.channels.add(this)
  }

  static pair(network: MemoryNetwork, a: Node, b: Node): [MemoryChannel, MemoryChannel] {
    const x = new MemoryChannel(network, a)
    const y = new MemoryChannel(network, b)
    x.remote = y
    y.remote = x
    return [x, y]
  }

  get bufferedAmount(): number {
    return this.outboxBytes
  }

  get closed(): boolean {
    return this.isClosed
  }

  send(frame: Uint8Array): void {
    if (!(frame instanceof Uint8Array))
      throw new WireProtocolError('ERR_WIRE_PAYLOAD', 'frame must be a Uint8Array')
    if (this.isClosed) throw new TransportError('ERR_CHANNEL_CLOSED', 'channel is closed')
    if (frame.length > this.network.maxMessageBytes) {
      const err = new TransportError(
        'ERR_CHANNEL_CLOSED',
        `frame of ${frame.length} bytes is over the channel's ${this.network.maxMessageBytes}-byte limit; channel closed`,
      )
      this.finish(err)
      throw err
    }
    this.outbox.push(frame.slice())
    this.outboxBytes += frame.length
    this.scheduleDrain()
  }

  waitForLow(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (this.isClosed || signal?.aborted || this.outboxBytes <= this.network.bufferedAmountLowThreshold) {
        return resolve()
      }
      const done = (): void => {
        this.lowWaiters.delete(done)
        signal?.removeEventListener('abort', done)
        resolve()
      }
      this.lowWaiters.add(done)
      signal?.addEventListener('abort', done, { once: true })
    })
  }

  onFrame(handler: (frame: Uint8Array) => void): void {
    this.frameHandlers.add(handler)
    if (this.frameHandlers.size === 1 && this.inbox.length > 0) setTimeout(() => this.flushInbox(), 0)
  }

  onClose(handler: (reason?: Error) => void): void {
    this.closeHandlers.add(handler)
  }

  close(): void {
    this.finish(undefined)
  }

  /** Closes this end now; the peer learns of it after the frames already queued to it. */
  private finish(reason: Error | undefined): void {
    if (this.isClosed) return
    this.isClosed = true
    this.outbox.push({ close: reason })
    this.scheduleDrain()
    this.markClosed(reason)
  }

  private markClosed(reason: Error | undefined): void {
    this.isClosed = true
    this.owner.channels.delete(this)
    for (const wake of [...this.lowWaiters]) wake()
    const handlers = [...this.closeHandlers]
    this.closeHandlers.clear()
    for (const handler of handlers) guard(() => handler(reason))
  }

  private scheduleDrain(): void {
    if (this.draining) return
    this.draining = true
    setTimeout(() => this.drain(), 0)
  }

  private drain(): void {
    this.draining = false
    let budget = this.network.drainBytesPerTick
    while (this.outbox.length > 0 && budget > 0) {
      const item = this.outbox.shift() as Item
      if (item instanceof Uint8Array) {
        budget -= item.length
        this.outboxBytes -= item.length
      }
      this.remote.receive(item)
    }
    if (this.outboxBytes <= this.network.bufferedAmountLowThreshold) {
      for (const wake of [...this.lowWaiters]) wake()
    }
    if (this.outbox.length > 0) this.scheduleDrain()
  }

  private receive(item: Item): void {
    const queued = this.inbox.length > 0
    // Frames wait for a listener. A close waits for none, but must not overtake frames about to be read.
    const wait =
      item instanceof Uint8Array
        ? this.frameHandlers.size === 0 || queued
        : queued && this.frameHandlers.size > 0
    if (wait) this.inbox.push(item)
    else this.dispatch(item)
  }

  private flushInbox(): void {
    while (this.inbox.length > 0) this.dispatch(this.inbox.shift() as Item)
  }

  private dispatch(item: Item): void {
    if (!(item instanceof Uint8Array)) {
      if (this.isClosed) return
      // The peer is gone, so nothing still queued towards it can be delivered.
      this.outbox.length = 0
      this.outboxBytes = 0
      this.markClosed(item.close)
      return
    }
    if (this.isClosed) return
    for (const handler of this.frameHandlers) guard(() => handler(item))
  }
}

function positive(name: string, value: number, min = 1): number {
  if (!(Number.isSafeInteger(value) || value === Number.POSITIVE_INFINITY) || value < min) {
    throw new TransportError(
      'ERR_TRANSPORT_OPTIONS',
      `${name} must be an integer >= ${min}, got ${String(value)}`,
    )
  }
  return value
}

/** Relays signaling payloads between peers in one process, JSON round-tripped as a server would. */
export class MemorySignalingHub {
  private readonly handlers = new Map<string, Set<(from: string, data: SignalData) => void>>()

  connect(peerId: string): Signaling {
    const mine = new Set<(from: string, data: SignalData) => void>()
    this.handlers.set(peerId, mine)
    return {
      send: (to: string, data: SignalData): void => {
        let copy: SignalData
        try {
          copy = JSON.parse(JSON.stringify(data)) as SignalData
        } catch (cause) {
          throw new TransportError('ERR_SIGNAL_INVALID', 'signal data is not JSON', { cause })
        }
        setTimeout(() => {
          for (const handler of this.handlers.get(to) ?? []) guard(() => handler(peerId, copy))
        }, 0)
      },
      onSignal: (handler: (from: string, data: SignalData) => void): (() => void) => {
        mine.add(handler)
        return () => mine.delete(handler)
      },
    }
  }
}
