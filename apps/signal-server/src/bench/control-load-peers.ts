import { ControlClient, generateIdentity } from '@butterfly/core'

/**
 * The load bench's simulated peers: core's ControlClient, exactly what butterfly-worker and the
 * tabs join with (hello nonce, signed join proof, capabilities, heartbeats at the server's
 * interval), all in the bench process. They never load layers; they join, heartbeat, exchange
 * timestamped signals and leave.
 */
export class ControlLoadPeers {
  /** Joins refused by the server or timed out. */
  refused = 0
  /** Peers whose connection went without their asking (dropped by the server, or broken). */
  lost = 0
  plansReceived = 0
  signalsSent = 0
  signalsReceived = 0
  /** Relay latencies in ms, send to receipt, both timed by this process's clock: between peers
   * on one server, and on two. */
  readonly withinMs: number[] = []
  readonly crossMs: number[] = []
  private readonly live: ControlClient[] = []
  /** Peers that exchange signals; they never churn, so a signal never races a leave. */
  private readonly pairs: [ControlClient, ControlClient][] = []
  private readonly pending: Promise<unknown>[] = []
  private readonly leaving = new WeakSet<ControlClient>()
  private next = 0
  private nextPair = 0
  private waiters: (() => void)[] = []

  constructor(
    /** Peer i joins server i mod their number. */
    private readonly serverUrls: readonly string[],
    private readonly mesh: string,
  ) {}

  /** Peers joined and not yet left (the pairs included). */
  get size(): number {
    return this.live.length + 2 * this.pairs.length
  }

  /** Starts one join of a peer that may later churn; it counts as refused if it fails. */
  join(): Promise<ControlClient | undefined> {
    const i = this.next++
    const attempt = this.connectAndJoin(i).catch(() => {
      this.refused++
      return undefined
    })
    this.pending.push(attempt)
    return attempt
  }

  /** Waits for every join started so far. */
  async settled(): Promise<void> {
    await Promise.all(this.pending.splice(0))
  }

  /**
   * Joins `count` pairs of peers that exchange signals (after the ramp, so they see all of it).
   * With several servers, even pairs span two servers and odd ones sit on one (taking turns).
   */
  async joinPairs(count: number): Promise<void> {
    const n = this.serverUrls.length
    for (let p = 0; p < count; p++) {
      const first = n === 1 ? 0 : p % 2 === 0 ? 0 : Math.floor(p / 2) % n
      const second = n === 1 || p % 2 === 1 ? first : 1
      const [a, b] = await Promise.all([this.joinAside(first), this.joinAside(second)])
      if (a === undefined || b === undefined) continue
      this.pairs.push([a, b])
      const cross = first !== second
      for (const c of [a, b]) c.onSignal((_from, data) => this.received(data, cross))
    }
  }

  /** One peer leaves: a random one, never a paired one. */
  leaveOne(): void {
    if (this.live.length === 0) return
    const at = Math.floor(Math.random() * this.live.length)
    const [client] = this.live.splice(at, 1)
    if (client !== undefined) this.pending.push(this.leave(client))
  }

  /** One signal between the next pair (round-robin), carrying its send time. */
  sendSignal(): void {
    const k = this.nextPair++
    const rounds = Math.max(1, this.pairs.length)
    const pair = this.pairs[k % rounds]
    if (pair === undefined) return
    // The direction flips every round, not every signal: with an even number of pairs the latter
    // would send each pair's signals one way only (every cross-server one from B to A).
    const [a, b] = Math.floor(k / rounds) % 2 === 0 ? pair : [pair[1], pair[0]]
    a.send(b.peerId, { bench: 'relay', t: performance.now() })
    this.signalsSent++
  }

  /** Resolves once every signal sent has arrived, or after `timeoutMs` (then some are missing). */
  allSignalsIn(timeoutMs: number): Promise<boolean> {
    if (this.signalsReceived >= this.signalsSent) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      this.waiters.push(() => {
        clearTimeout(timer)
        resolve(true)
      })
    })
  }

  /** Every peer leaves (politely, as a worker does on SIGTERM). */
  async close(): Promise<void> {
    await this.settled()
    const all = [...this.live.splice(0), ...this.pairs.splice(0).flat()]
    await Promise.all(all.map((c) => this.leave(c)))
  }

  private received(data: Readonly<Record<string, unknown>>, cross: boolean): void {
    if (data.bench !== 'relay' || typeof data.t !== 'number') return
    ;(cross ? this.crossMs : this.withinMs).push(performance.now() - data.t)
    this.signalsReceived++
    if (this.signalsReceived >= this.signalsSent) for (const w of this.waiters.splice(0)) w()
  }

  private async joinAside(server: number): Promise<ControlClient | undefined> {
    const i = this.next++
    return this.connectAndJoin(i, false, server).catch(() => {
      this.refused++
      return undefined
    })
  }

  private async connectAndJoin(
    i: number,
    churnable = true,
    server = i % this.serverUrls.length,
  ): Promise<ControlClient> {
    const serverUrl = this.serverUrls[server] as string
    const client = await ControlClient.connect({ serverUrl, connectTimeoutMs: 30_000 })
    client.onDisconnect(() => {
      if (!this.leaving.has(client)) this.lost++
    })
    try {
      await client.join({
        mesh: this.mesh,
        token: '',
        // Varied, so the planner has real choices to make among a thousand peers.
        capabilities: {
          backend: 'cpu',
          memoryBytes: (1 + (i % 4)) * 2 ** 30,
          layerStepsPerSec: 200 + 37 * (i % 23),
          name: `load-${i}`,
        },
        identity: generateIdentity(),
      })
    } catch (err) {
      this.leaving.add(client)
      await client.leave()
      throw err
    }
    client.onPlan(() => {
      this.plansReceived++
    })
    if (churnable) this.live.push(client)
    return client
  }

  private async leave(client: ControlClient): Promise<void> {
    this.leaving.add(client)
    await client.leave()
  }
}
