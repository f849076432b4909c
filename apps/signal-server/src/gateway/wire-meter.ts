import type { MessageConnection } from '@butterfly/core'

/** Frame bytes the gateway exchanged with a mesh's workers, over live and closed connections. */
export class WireMeter {
  private readonly live = new Set<MessageConnection>()
  private readonly closed = { sent: 0, received: 0 }

  watch(conn: MessageConnection): void {
    this.live.add(conn)
    conn.onClose(() => {
      this.live.delete(conn)
      this.closed.sent += conn.bytesSent
      this.closed.received += conn.bytesReceived
    })
  }

  totals(): { sent: number; received: number } {
    let { sent, received } = this.closed
    for (const c of this.live) {
      sent += c.bytesSent
      received += c.bytesReceived
    }
    return { sent, received }
  }
}
