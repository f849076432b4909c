import { StageError } from '../errors.js'
import type { MessageConnection } from '../transport/message-connection.js'
import { type StepError, type StepRequest, toWireError } from '../wire/messages.js'
import { RequestOutbox } from './request-outbox.js'

/** What a worker offers its stage host for chained steps (wire/step-route.ts). */
export interface StageLinks {
  /** The peer at the other end of a connection the host serves, if known. */
  peerOf(conn: MessageConnection): string | undefined
  /** The open connection to a peer, if there is one (the coordinator a route answers). */
  connectionOf(peerId: string): MessageConnection | undefined
  /** Whether a peer holds a stage of the current plan: only those may forward steps here, or be forwarded to. */
  inPlan(peerId: string): boolean
  /** A connection to a peer (dialled if there is none yet). */
  dial(peerId: string, signal: AbortSignal): Promise<MessageConnection>
}

/** How long a worker waits to open a channel to the next peer of a route. */
const DIAL_MS = 15_000
/** Forwarded steps remembered for relaying their errors (the oldest are forgotten first). */
const MAX_FORWARDED = 4096

/**
 * The worker side of chained steps. A routed request is accepted from its coordinator (the entry
 * peer) or from a peer of the current plan, and only when the coordinator is connected here; its
 * output goes on to the route's next peer, which must hold a stage of the plan too, so a peer
 * cannot make workers dial whoever it likes. Forwards to one peer in the same task go out as one
 * StepRequests, as the coordinator's own requests do.
 */
export class StepForwarder {
  private readonly outboxes = new Map<MessageConnection, RequestOutbox>()
  /** `generation:step` forwarded → the connection it went to, and its coordinator's. */
  private readonly forwarded = new Map<
    string,
    { readonly to: MessageConnection; readonly coordinator: MessageConnection }
  >()

  constructor(private readonly links: StageLinks | undefined) {}

  /**
   * The connection a routed request's answers and errors go to, an error for the sender when the
   * request is refused, or undefined to drop it (nobody connected to answer).
   */
  answerTo(from: MessageConnection, req: StepRequest): MessageConnection | StageError | undefined {
    const links = this.links
    const replyTo = req.replyTo as string
    if (links === undefined) return new StageError('ERR_CHAIN_LINK', 'this peer does not forward steps')
    const sender = links.peerOf(from)
    if (sender === undefined || (sender !== replyTo && !links.inPlan(sender))) {
      return new StageError('ERR_CHAIN_LINK', 'routed steps come from the coordinator or a peer of the plan')
    }
    // No way to answer: the sender hears of it, and relays it to the coordinator (relayError).
    if (sender === replyTo) return from
    return links.connectionOf(replyTo) ?? new StageError('ERR_CHAIN_LINK', `no connection to ${replyTo} here`)
  }

  /**
   * A StepError from a peer this worker forwarded the step to: passed on to the step's
   * coordinator, which waits for the step and would otherwise never hear of its failure.
   */
  relayError(from: MessageConnection, err: StepError): void {
    const key = `${err.generationId}:${err.stepIndex}`
    const f = this.forwarded.get(key)
    if (f === undefined || f.to !== from) return
    this.forwarded.delete(key)
    f.coordinator.send({ ...err, error: toWireError(err.error) }).catch(() => undefined)
  }

  /** Sends the step's output on to the route's next peer as its StepRequest. */
  async forward(req: StepRequest, hidden: Float32Array, coordinator: MessageConnection): Promise<void> {
    const [next, ...rest] = req.route ?? []
    const links = this.links
    if (next === undefined || links === undefined) throw new StageError('ERR_CHAIN_LINK', 'no next peer')
    if (!links.inPlan(next)) {
      throw new StageError('ERR_CHAIN_LINK', `peer ${next} holds no stage of this plan`)
    }
    let conn = links.connectionOf(next)
    if (conn === undefined) {
      const abort = new AbortController()
      const timer = setTimeout(() => abort.abort(new StageError('ERR_CHAIN_LINK', 'dial timed out')), DIAL_MS)
      try {
        conn = await links.dial(next, abort.signal)
      } catch (err) {
        throw new StageError('ERR_CHAIN_LINK', `cannot reach ${next}: ${(err as Error).message}`)
      } finally {
        clearTimeout(timer)
      }
    }
    let outbox = this.outboxes.get(conn)
    if (outbox === undefined) {
      const created = new RequestOutbox(conn)
      this.outboxes.set(conn, created)
      conn.onClose(() => {
        if (this.outboxes.get(conn) === created) this.outboxes.delete(conn)
      })
      outbox = created
    }
    const msg: StepRequest = {
      type: 'StepRequest',
      generationId: req.generationId,
      stepIndex: req.stepIndex,
      startPos: req.startPos,
      seqLen: req.seqLen,
      temperature: req.temperature,
      deadlineMs: req.deadlineMs,
      hidden,
      ...(req.hiddenDtype !== undefined ? { hiddenDtype: req.hiddenDtype } : {}),
      ...(req.candidates !== undefined ? { candidates: req.candidates } : {}),
      route: rest,
      replyTo: req.replyTo as string,
    }
    const key = `${req.generationId}:${req.stepIndex}`
    this.forwarded.delete(key)
    this.forwarded.set(key, { to: conn, coordinator })
    if (this.forwarded.size > MAX_FORWARDED)
      this.forwarded.delete(this.forwarded.keys().next().value as string)
    try {
      await outbox.send(msg)
    } catch (err) {
      throw new StageError('ERR_CHAIN_LINK', `cannot forward to ${next}: ${(err as Error).message}`)
    }
  }
}
