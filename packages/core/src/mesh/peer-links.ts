import { MessageConnection } from '../transport/message-connection.js'
import type { FrameChannel, Transport } from '../transport/transport.js'
import type { StageLinks } from './step-forwarder.js'

/**
 * A worker's connections, one per peer whoever dialled: coordinators dial workers, and a worker
 * dials the next peer of a chained step's route. Every connection, incoming or dialled, goes to
 * `onConnection` (the worker serves each), and the links a stage host forwards steps over are
 * these connections. The current plan says which peers may forward steps here or be dialled.
 */
export class PeerLinks implements StageLinks {
  private readonly byPeer = new Map<string, MessageConnection>()
  private readonly peers = new Map<MessageConnection, string>()
  private readonly dialing = new Map<string, Promise<MessageConnection>>()
  private planPeers = new Set<string>()
  private readonly off: () => void

  constructor(
    private readonly transport: Transport,
    private readonly onConnection: (conn: MessageConnection) => void,
  ) {
    this.off = transport.onIncoming((from, channel) => void this.adopt(from, channel))
  }

  /**
   * The peers holding stages of the plan now in force. Connections to workers that left the plan
   * are closed: such a peer may come back under the same id (a tab reopened), and a channel to its
   * old self can look open long after it is gone, swallowing every step forwarded into it.
   * Coordinators are never in a plan, so their connections stay.
   */
  setPlan(peers: Iterable<string>): void {
    const next = new Set(peers)
    for (const id of this.planPeers) if (!next.has(id)) this.byPeer.get(id)?.close()
    this.planPeers = next
  }

  peerOf(conn: MessageConnection): string | undefined {
    return this.peers.get(conn)
  }

  connectionOf(peerId: string): MessageConnection | undefined {
    const conn = this.byPeer.get(peerId)
    return conn !== undefined && !conn.closed ? conn : undefined
  }

  inPlan(peerId: string): boolean {
    return this.planPeers.has(peerId)
  }

  dial(peerId: string, signal: AbortSignal): Promise<MessageConnection> {
    const open = this.connectionOf(peerId)
    if (open !== undefined) return Promise.resolve(open)
    let pending = this.dialing.get(peerId)
    if (pending === undefined) {
      // Concurrent forwards share one dial: two MessageConnections on one channel would split its frames.
      pending = this.transport
        .dial(peerId, signal)
        .then((channel) => this.connectionOf(peerId) ?? this.adopt(peerId, channel))
        .finally(() => this.dialing.delete(peerId))
      this.dialing.set(peerId, pending)
    }
    return pending
  }

  /** Stops taking incoming connections (the open ones stay the caller's to close). */
  close(): void {
    this.off()
  }

  private adopt(from: string, channel: FrameChannel): MessageConnection {
    const conn = new MessageConnection(channel)
    this.byPeer.set(from, conn)
    this.peers.set(conn, from)
    conn.onClose(() => {
      this.peers.delete(conn)
      if (this.byPeer.get(from) === conn) this.byPeer.delete(from)
    })
    this.onConnection(conn)
    return conn
  }
}
