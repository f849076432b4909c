import type { LinkStat, MessageConnection } from '@butterfly/core'

/** Round-trip time of the gateway's WebRTC link to one peer, as /health shows it. */
export type { LinkStat }

export interface LinkProberInit {
  /** How often each link is pinged. */
  readonly intervalMs?: number
  /** How many recent samples the median covers. */
  readonly window?: number
  readonly now?: () => number
}

interface Probe {
  readonly off: () => void
  readonly rtts: number[]
  /** Nonce of the ping in flight and when it left; one at a time keeps a stalled link cheap. */
  pending: { nonce: number; sentAt: number } | undefined
  last: number
}

/**
 * Pings every peer the gateway is connected to and keeps the recent round-trip times. The
 * pings ride the same data channel as the steps, so the figure is what a hidden state's hop
 * costs on that link (queueing behind a large prefill included), not an ICMP number.
 */
export class LinkProber {
  private readonly probes = new Map<string, Probe>()
  private readonly intervalMs: number
  private readonly window: number
  private readonly now: () => number
  private readonly timer: ReturnType<typeof setInterval>
  private readonly connections = new Map<string, MessageConnection>()
  private nonce = 1

  constructor(init: LinkProberInit = {}) {
    this.intervalMs = init.intervalMs ?? 2000
    this.window = init.window ?? 15
    this.now = init.now ?? (() => performance.now())
    this.timer = setInterval(() => this.pingAll(), this.intervalMs)
    this.timer.unref?.()
  }

  /** Starts probing `conn`; the first ping leaves at once so a new link shows a figure soon. */
  watch(peerId: string, conn: MessageConnection): void {
    this.forget(peerId)
    const probe: Probe = {
      rtts: [],
      pending: undefined,
      last: 0,
      off: () => {
        offMessage()
        offClose()
      },
    }
    const offMessage = conn.onMessage((msg) => {
      if (msg.type !== 'Pong' || probe.pending?.nonce !== msg.nonce) return
      probe.last = this.now() - probe.pending.sentAt
      probe.pending = undefined
      probe.rtts.push(probe.last)
      if (probe.rtts.length > this.window) probe.rtts.shift()
    })
    const offClose = conn.onClose(() => this.forget(peerId))
    this.probes.set(peerId, probe)
    this.connections.set(peerId, conn)
    this.ping(peerId)
  }

  forget(peerId: string): void {
    this.probes.get(peerId)?.off()
    this.probes.delete(peerId)
    this.connections.delete(peerId)
  }

  snapshot(): LinkStat[] {
    const out: LinkStat[] = []
    for (const [peerId, p] of this.probes) {
      if (p.rtts.length === 0) continue
      out.push({ peerId, rttMs: median(p.rtts), lastRttMs: p.last, samples: p.rtts.length })
    }
    return out
  }

  close(): void {
    clearInterval(this.timer)
    for (const id of [...this.probes.keys()]) this.forget(id)
  }

  private pingAll(): void {
    for (const id of this.probes.keys()) this.ping(id)
  }

  private ping(peerId: string): void {
    const probe = this.probes.get(peerId)
    const conn = this.connections.get(peerId)
    if (probe === undefined || conn === undefined) return
    const now = this.now()
    // A ping unanswered for 10 intervals is given up, so one lost pong cannot stop the probing.
    if (probe.pending !== undefined && now - probe.pending.sentAt < this.intervalMs * 10) return
    const nonce = this.nonce
    this.nonce = (this.nonce + 1) >>> 0 || 1
    probe.pending = { nonce, sentAt: now }
    conn.send({ type: 'Ping', nonce, sentAt: Date.now() }).catch(() => undefined)
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}
