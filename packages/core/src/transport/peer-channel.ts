import { TransportError } from '../errors.js'
import { guard } from './guard.js'
import type { FrameChannel } from './transport.js'

/**
 * The parts of simple-peer and of the RTCDataChannel under it that we use. Declared here
 * because @types/simple-peer pulls Node's and the DOM's types into core, which has neither.
 */
export interface PeerDataChannel {
  readonly bufferedAmount: number
  bufferedAmountLowThreshold: number
  addEventListener(type: 'bufferedamountlow', listener: () => void): void
  removeEventListener(type: 'bufferedamountlow', listener: () => void): void
}

export interface SimplePeerLike {
  signal(data: unknown): void
  send(data: Uint8Array): void
  destroy(err?: Error): void
  on(event: 'signal', listener: (data: Record<string, unknown>) => void): void
  on(event: 'connect' | 'close', listener: () => void): void
  on(event: 'data', listener: (data: unknown) => void): void
  on(event: 'error', listener: (err: Error & { code?: string }) => void): void
  /** simple-peer's own data channel; null once destroyed. */
  readonly _channel: PeerDataChannel | null | undefined
  readonly destroyed?: boolean
  /**
   * simple-peer's handler of the data channel's message events (it pushes the data into its
   * readable stream, which emits 'data'). Looked up on every message, so an instance may replace it.
   */
  _onChannelMessage?: (event: { readonly data: unknown }) => void
}

/** Frames received before anyone listens are held, up to this many; a peer flooding past it is cut off. */
const MAX_INBOX_FRAMES = 256

const utf8 = new TextEncoder()

/** A FrameChannel over one simple-peer connection (one ordered, reliable data channel). */
export class PeerChannel implements FrameChannel {
  private readonly frameHandlers = new Set<(frame: Uint8Array) => void>()
  private readonly closeHandlers = new Set<(reason?: Error) => void>()
  private readonly lowWaiters = new Set<() => void>()
  private readonly inbox: Uint8Array[] = []
  private isClosed = false

  constructor(
    private readonly peer: SimplePeerLike,
    private readonly lowThreshold: number,
  ) {
    if (typeof peer._onChannelMessage === 'function') {
      // Straight from the data channel's message event, past simple-peer's stream: its push costs
      // tens of µs a frame, and its browser build's process.nextTick is a setTimeout(0), so every
      // frame also woke the event loop once more a millisecond later. Same bytes, same order.
      peer._onChannelMessage = (event) => {
        if (peer.destroyed !== true) this.receive(event.data)
      }
    } else peer.on('data', (data) => this.receive(data))
  }

  /** Called once the data channel is open. */
  opened(): void {
    const dc = this.peer._channel
    // simple-peer sets its own 64 KiB threshold; ours matches the high-water mark we send against.
    if (dc) dc.bufferedAmountLowThreshold = this.lowThreshold
  }

  get bufferedAmount(): number {
    if (this.isClosed) return 0
    return this.peer._channel?.bufferedAmount ?? 0
  }

  get closed(): boolean {
    return this.isClosed
  }

  send(frame: Uint8Array): void {
    if (this.isClosed) throw new TransportError('ERR_CHANNEL_CLOSED', 'channel is closed')
    try {
      this.peer.send(frame)
    } catch (cause) {
      const err = new TransportError('ERR_CHANNEL_CLOSED', `data channel refused a frame: ${String(cause)}`, {
        cause,
      })
      this.close()
      throw err
    }
  }

  waitForLow(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const dc = this.peer._channel
      if (!dc || this.isClosed || signal?.aborted || dc.bufferedAmount <= dc.bufferedAmountLowThreshold) {
        resolve()
        return
      }
      const done = (): void => {
        dc.removeEventListener('bufferedamountlow', done)
        signal?.removeEventListener('abort', done)
        this.lowWaiters.delete(done)
        resolve()
      }
      dc.addEventListener('bufferedamountlow', done)
      signal?.addEventListener('abort', done, { once: true })
      this.lowWaiters.add(done)
    })
  }

  onFrame(handler: (frame: Uint8Array) => void): void {
    this.frameHandlers.add(handler)
    if (this.frameHandlers.size === 1) {
      while (this.inbox.length > 0 && !this.isClosed) this.dispatch(this.inbox.shift() as Uint8Array)
    }
  }

  onClose(handler: (reason?: Error) => void): void {
    this.closeHandlers.add(handler)
  }

  /** Closes the connection now; frames still buffered are discarded. */
  close(): void {
    this.teardown(undefined)
  }

  private teardown(reason: Error | undefined): void {
    if (this.isClosed) return
    this.markClosed(reason)
    try {
      this.peer.destroy()
    } catch {
      // Already torn down.
    }
  }

  /** Called when simple-peer reports the connection gone. */
  markClosed(reason: Error | undefined): void {
    if (this.isClosed) return
    this.isClosed = true
    this.inbox.length = 0
    for (const wake of [...this.lowWaiters]) wake()
    const handlers = [...this.closeHandlers]
    this.closeHandlers.clear()
    this.frameHandlers.clear()
    for (const handler of handlers) guard(() => handler(reason))
  }

  private receive(data: unknown): void {
    if (this.isClosed) return
    let frame: Uint8Array
    if (data instanceof Uint8Array) frame = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    else if (data instanceof ArrayBuffer) frame = new Uint8Array(data)
    // A text message is a peer speaking another protocol; let the frame decoder say so.
    else if (typeof data === 'string') frame = utf8.encode(data)
    else frame = new Uint8Array(0)
    if (this.frameHandlers.size > 0) {
      this.dispatch(frame)
      return
    }
    if (this.inbox.length >= MAX_INBOX_FRAMES) {
      this.teardown(
        new TransportError(
          'ERR_CHANNEL_CLOSED',
          `peer sent over ${MAX_INBOX_FRAMES} frames before anyone listened`,
        ),
      )
      return
    }
    this.inbox.push(frame)
  }

  private dispatch(frame: Uint8Array): void {
    for (const handler of this.frameHandlers) guard(() => handler(frame))
  }
}
