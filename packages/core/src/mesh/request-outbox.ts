import { afterMicrotasks } from '../engine/batch-gate.js'
import type { MessageConnection } from '../transport/message-connection.js'
import { MAX_BATCH_STEPS, type StepRequest, validateMessage } from '../wire/messages.js'

interface Queued {
  readonly msg: StepRequest
  readonly signal: AbortSignal | undefined
  resolve(): void
  reject(err: unknown): void
}

/**
 * The coordinator's step requests to one peer. The generations of a batch come back together and
 * ask for their next steps in the same task, so requests are queued and sent once it is over: one
 * alone as a StepRequest, several as one StepRequests message (one send instead of one each).
 * Anything else sent on the connection flushes the queue first, so the peer sees every message in
 * the order it was asked for.
 */
export class RequestOutbox {
  private queue: Queued[] = []
  private scheduled = false

  constructor(private readonly conn: MessageConnection) {}

  /** Resolves once the request is handed to the connection; a signal aborted before that drops it. */
  send(msg: StepRequest, signal?: AbortSignal): Promise<void> {
    // Checked now, so one bad request fails alone instead of the batch it would join.
    try {
      validateMessage(msg)
    } catch (err) {
      return Promise.reject(err)
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ msg, signal, resolve, reject })
      if (this.scheduled) return
      this.scheduled = true
      afterMicrotasks(() => this.flush())
    })
  }

  /** Sends whatever is queued now. */
  flush(): void {
    this.scheduled = false
    const live: Queued[] = []
    for (const q of this.queue.splice(0)) {
      if (q.signal?.aborted === true) q.reject(q.signal.reason)
      else live.push(q)
    }
    for (let i = 0; i < live.length; i += MAX_BATCH_STEPS) {
      const group = live.slice(i, i + MAX_BATCH_STEPS)
      const sent =
        group.length === 1
          ? this.conn.send((group[0] as Queued).msg, (group[0] as Queued).signal)
          : this.conn.send({ type: 'StepRequests', requests: group.map((q) => q.msg) })
      sent.then(
        () => {
          for (const q of group) q.resolve()
        },
        (err: unknown) => {
          for (const q of group) q.reject(err)
        },
      )
    }
  }
}
