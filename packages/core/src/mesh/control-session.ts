import { ButterflyError, ControlError } from '../errors.js'
import type { PeerIdentity } from '../identity/peer-identity.js'
import type { Signaling } from '../transport/transport.js'
import { ControlClient, type JoinOptions } from './control-client.js'
import type { JoinAck, PlanMessage } from './control-protocol.js'

export interface ControlSessionInit {
  /** Servers in the order tried; the first join goes to the first that answers. */
  readonly servers: readonly string[]
  readonly join: Omit<JoinOptions, 'identity'>
  /**
   * How long to keep trying to rejoin after the server drops this peer; 0 gives up at once
   * (`lost` resolves on the first drop), as a single server without failover did.
   */
  readonly reconnectForMs: number
  /** First wait between rounds over every server, doubling up to `maxRetryMs`. Default 250 ms. */
  readonly retryMs?: number
  readonly maxRetryMs?: number
}

export interface ControlSessionComponents {
  readonly identity: PeerIdentity
  readonly log?: (line: string) => void
}

/** A plan and the server it came from (its model files are fetched from there). */
export type PlanHandler = (plan: PlanMessage, server: string) => void

type Joined = Extract<JoinAck, { ok: true }>

/**
 * Refusals that another try may get past: nobody answered, too many joins for now, or the old
 * session of this peer's address not yet timed out. Anything else (a bad token, an unknown mesh,
 * a forged proof) would be refused again, so that server is skipped.
 */
const RETRYABLE = new Set(['ERR_NOT_JOINED', 'ERR_JOIN_RATE', 'ERR_PEERS_PER_ADDRESS'])

function retryable(err: unknown): boolean {
  return !(err instanceof ButterflyError) || RETRYABLE.has(err.code)
}

/**
 * A peer's membership that outlives its server: when the server drops the connection, it
 * rejoins, with the same identity and capabilities, through the next server of the list that
 * admits it (the same one again once it restarts). What the peer built meanwhile (its stage,
 * its WebRTC connections to coordinators and other peers) is not touched: generations that other
 * servers coordinate go on while this peer finds a new control connection. Signals sent while
 * no server is connected are dropped; WebRTC dials time out and are retried by their callers.
 */
export class ControlSession implements Signaling {
  private client: ControlClient | undefined
  private server: string
  private closed = false
  private readonly planHandlers = new Set<PlanHandler>()
  private readonly signalHandlers = new Set<(from: string, data: Readonly<Record<string, unknown>>) => void>()
  private readonly invalidHandlers = new Set<(err: unknown) => void>()
  private readonly offs: Array<() => void> = []
  private resolveLost: (reason: string) => void = () => undefined
  private readonly abort = new AbortController()
  /** Resolves with the reason when no server took this peer back within `reconnectForMs`. */
  readonly lost: Promise<string>
  /** The last join's answer (its peer id never changes: the identity determines it). */
  ack: Joined

  private constructor(
    private readonly init: ControlSessionInit,
    private readonly components: ControlSessionComponents,
    first: { client: ControlClient; server: string; ack: Joined },
  ) {
    this.server = first.server
    this.ack = first.ack
    this.lost = new Promise((resolve) => {
      this.resolveLost = resolve
    })
    this.attach(first.client)
  }

  /** Joins through the first server that admits this peer; rejects with the last refusal. */
  static async open(
    init: ControlSessionInit,
    components: ControlSessionComponents,
    signal?: AbortSignal,
  ): Promise<ControlSession> {
    if (init.servers.length === 0) throw new ControlError('ERR_CONTROL_INPUT', 'no server to join')
    let last: unknown
    for (const server of init.servers) {
      try {
        const joined = await joinOne(server, init, components.identity, signal)
        return new ControlSession(init, components, joined)
      } catch (err) {
        last = err
        if (signal?.aborted) break
        if (init.servers.length > 1)
          components.log?.(`cannot join through ${server}: ${(err as Error).message}`)
      }
    }
    throw last
  }

  get peerId(): string {
    return this.ack.peerId
  }

  /** The server this peer is joined through now. */
  get serverUrl(): string {
    return this.server
  }

  onPlan(handler: PlanHandler, onInvalid?: (err: unknown) => void): () => void {
    this.planHandlers.add(handler)
    if (onInvalid !== undefined) this.invalidHandlers.add(onInvalid)
    // The current server's latest plan, if one came before this subscription.
    this.client?.onPlan((plan) => handler(plan, this.server), onInvalid)()
    return () => {
      this.planHandlers.delete(handler)
      if (onInvalid !== undefined) this.invalidHandlers.delete(onInvalid)
    }
  }

  stageReady(planVersion: number): void {
    this.client?.stageReady(planVersion)
  }

  stageFailed(planVersion: number, err: unknown): void {
    this.client?.stageFailed(planVersion, err)
  }

  send(to: string, data: Readonly<Record<string, unknown>>): void {
    this.client?.send(to, data)
  }

  onSignal(handler: (from: string, data: Readonly<Record<string, unknown>>) => void): () => void {
    this.signalHandlers.add(handler)
    return () => this.signalHandlers.delete(handler)
  }

  /** Leaves the current server and stops rejoining. */
  async leave(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.abort.abort()
    this.detach()
    await this.client?.leave()
    this.client = undefined
  }

  private attach(client: ControlClient): void {
    this.client = client
    const server = this.server
    this.offs.push(
      client.onPlan(
        (plan) => {
          for (const h of this.planHandlers) h(plan, server)
        },
        (err) => {
          for (const h of this.invalidHandlers) h(err)
        },
      ),
      client.onSignal((from, data) => {
        for (const h of this.signalHandlers) h(from, data)
      }),
    )
    client.onDisconnect((reason) => {
      if (this.closed || this.client !== client) return
      this.detach()
      client.close()
      this.client = undefined
      this.components.log?.(`the server ${server} dropped this worker (${reason})`)
      if (this.init.reconnectForMs <= 0) this.resolveLost(reason)
      else void this.rejoin(reason)
    })
  }

  private detach(): void {
    for (const off of this.offs.splice(0)) off()
  }

  /** Tries every server in turn, starting after the one lost, until one admits this peer. */
  private async rejoin(reason: string): Promise<void> {
    const { servers } = this.init
    const deadline = Date.now() + this.init.reconnectForMs
    let wait = this.init.retryMs ?? 250
    let next = (servers.indexOf(this.server) + 1) % servers.length
    let refusedEverywhere: unknown
    for (;;) {
      refusedEverywhere = undefined
      let permanent = 0
      for (let i = 0; i < servers.length && !this.closed; i++) {
        const server = servers[(next + i) % servers.length] as string
        try {
          const joined = await joinOne(server, this.init, this.components.identity, this.abort.signal)
          if (this.closed) {
            await joined.client.leave()
            return
          }
          this.server = server
          this.ack = joined.ack
          this.attach(joined.client)
          this.components.log?.(`rejoined the mesh through ${server}`)
          return
        } catch (err) {
          if (!retryable(err)) {
            permanent++
            refusedEverywhere = err
            this.components.log?.(`${server} refused this worker: ${(err as Error).message}`)
          }
        }
      }
      if (this.closed) return
      // Every server refused for good (a revoked token, say): waiting would not change that.
      if (permanent === servers.length) {
        this.resolveLost(`${reason}; then refused: ${(refusedEverywhere as Error).message}`)
        return
      }
      if (Date.now() + wait > deadline) {
        this.resolveLost(`${reason}; no server took it back within ${duration(this.init.reconnectForMs)}`)
        return
      }
      this.components.log?.(`no server takes this worker back yet; trying again in ${wait} ms`)
      await delay(wait, this.abort.signal)
      wait = Math.min(wait * 2, this.init.maxRetryMs ?? 5000)
      next = 0
    }
  }
}

async function joinOne(
  server: string,
  init: ControlSessionInit,
  identity: PeerIdentity,
  signal: AbortSignal | undefined,
): Promise<{ client: ControlClient; server: string; ack: Joined }> {
  const client = await ControlClient.connect({ serverUrl: server }, signal)
  try {
    const ack = await client.join({ ...init.join, identity })
    return { client, server, ack }
  } catch (err) {
    // A refused join must not leave the connection (and the process) hanging.
    await client.leave()
    throw err
  }
}

/**
 * Waits `ms`, or less when `signal` aborts. The timer is kept referenced on purpose: between two
 * tries it may be all that keeps a worker's process alive.
 */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}

function duration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`
}
