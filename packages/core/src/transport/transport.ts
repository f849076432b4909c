/**
 * Transports move wire frames (already chunked, each ≤ 64 KiB) between two peers. They know
 * nothing of messages: MessageConnection (message-connection.ts) adds chunking,
 * reassembly, validation and backpressure on top of any FrameChannel.
 */

/** One ordered, reliable, message-oriented byte channel (an RTCDataChannel, or memory). */
export interface FrameChannel {
  /** Sends one frame. Throws if the channel is closed. */
  send(frame: Uint8Array): void
  /** Bytes queued and not yet handed to the network. */
  readonly bufferedAmount: number
  /** Resolves when bufferedAmount falls low, where the channel can tell; may never resolve. */
  waitForLow?(signal?: AbortSignal): Promise<void>
  onFrame(handler: (frame: Uint8Array) => void): void
  onClose(handler: (reason?: Error) => void): void
  close(): void
  readonly closed: boolean
}

/** Opaque signaling payload (SDP offers/answers, ICE candidates) relayed by the server. */
export type SignalData = Readonly<Record<string, unknown>>

/** How a transport reaches the other side before a direct channel exists. */
export interface Signaling {
  send(to: string, data: SignalData): void
  onSignal(handler: (from: string, data: SignalData) => void): () => void
}

/** Creates direct frame channels to other peers. */
export interface Transport {
  readonly peerId: string
  /** Opens a channel to `peerId`; rejects on abort or failure. */
  dial(peerId: string, signal?: AbortSignal): Promise<FrameChannel>
  /** Called for every channel another peer opens to us. */
  onIncoming(handler: (from: string, channel: FrameChannel) => void): () => void
  close(): Promise<void>
}
