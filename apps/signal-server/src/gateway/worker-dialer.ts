import { MessageConnection, type WebRtcTransport } from '@butterfly/core'

/**
 * The gateway's connections to workers, one per peer: dialled on first use (30 s at most), shared
 * by every plan's stages, forgotten when they close or fail so the next use dials afresh.
 */
export class WorkerDialer {
  private readonly connections = new Map<string, Promise<MessageConnection>>()
  private readonly open = new Map<string, MessageConnection>()
  /** How many of each peer's connections have closed so far. */
  private readonly closes = new Map<string, number>()

  constructor(
    private readonly transport: WebRtcTransport,
    /** Each new connection, once open (link probes, wire meters). */
    private readonly onOpen: (peerId: string, conn: MessageConnection) => void,
  ) {}

  /** Peers with a connection open or being dialled. */
  peers(): string[] {
    return [...this.connections.keys()]
  }

  /** Message handlers on the open connections, summed (see PipelineLeases). */
  messageListeners(): number {
    let n = 0
    for (const conn of this.open.values()) n += conn.messageListeners
    return n
  }

  /** The peer's connection; `signal` abandons the wait (the dial itself goes on for other users). */
  connection(peerId: string, signal?: AbortSignal): Promise<MessageConnection> {
    let c = this.connections.get(peerId)
    if (c === undefined) {
      const dialed = this.transport.dial(peerId, AbortSignal.timeout(30_000)).then((channel) => {
        const conn = new MessageConnection(channel)
        this.onOpen(peerId, conn)
        this.open.set(peerId, conn)
        conn.onClose(() => {
          if (this.open.get(peerId) === conn) this.open.delete(peerId)
          this.closes.set(peerId, (this.closes.get(peerId) ?? 0) + 1)
          this.forget(peerId, dialed)
        })
        return conn
      })
      dialed.catch(() => this.forget(peerId, dialed))
      this.connections.set(peerId, dialed)
      c = dialed
    }
    if (signal === undefined) return c
    const dial = c
    return new Promise((resolve, reject) => {
      const abort = () => reject(signal.reason)
      if (signal.aborted) return abort()
      signal.addEventListener('abort', abort, { once: true })
      dial.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort))
    })
  }

  /** Where the peers' connections stand now, for `closedSince`. */
  mark(peers: Iterable<string>): ReadonlyMap<string, number> {
    return new Map([...peers].map((p) => [p, this.closes.get(p) ?? 0]))
  }

  /**
   * Whether a connection to one of the marked peers closed since the mark: a pipeline built on it
   * is dead there (the peer went, or came back with a new session under the same plan).
   */
  closedSince(mark: ReadonlyMap<string, number>): boolean {
    for (const [peer, closes] of mark) if ((this.closes.get(peer) ?? 0) !== closes) return true
    return false
  }

  /** Closes and forgets the peer's connection. */
  drop(peerId: string): void {
    const c = this.connections.get(peerId)
    this.connections.delete(peerId)
    c?.then((conn) => conn.close()).catch(() => undefined)
  }

  closeAll(): void {
    for (const id of this.peers()) this.drop(id)
  }

  private forget(peerId: string, c: Promise<MessageConnection>): void {
    if (this.connections.get(peerId) === c) this.connections.delete(peerId)
  }
}
