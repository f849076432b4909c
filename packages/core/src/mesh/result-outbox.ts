import { afterMicrotasks } from '../engine/batch-gate.js'
import type { StepBatchSigner, StepSigner, StepSigningFields } from '../identity/step-signature.js'
import type { MessageConnection } from '../transport/message-connection.js'
import { MAX_BATCH_STEPS, type StepResult } from '../wire/messages.js'

interface Queued {
  readonly fields: StepSigningFields
  resolve(): void
  reject(err: unknown): void
}

/**
 * The stage host's replies to one connection. The steps of a batched run finish together, so
 * their results are queued and sent once the current task is over: alone as a StepResult with its
 * own signature, several as one StepResults message with one signature over them all (one send and
 * one signature per batch; with only a single-step signer, each goes out signed alone).
 */
export class ResultOutbox {
  private queue: Queued[] = []
  private scheduled = false

  constructor(
    private readonly conn: MessageConnection,
    private readonly sign: StepSigner | undefined,
    private readonly signBatch: StepBatchSigner | undefined,
  ) {}

  /** Resolves once the result is handed to the connection. */
  send(fields: StepSigningFields): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ fields, resolve, reject })
      if (this.scheduled) return
      this.scheduled = true
      afterMicrotasks(() => this.flush())
    })
  }

  private flush(): void {
    this.scheduled = false
    const all = this.queue
    this.queue = []
    const together = all.length > 1 && (this.sign === undefined || this.signBatch !== undefined)
    if (!together) {
      for (const q of all) this.settle([q], this.conn.send(this.single(q.fields)))
      return
    }
    for (let i = 0; i < all.length; i += MAX_BATCH_STEPS) {
      const group = all.slice(i, i + MAX_BATCH_STEPS)
      const settled = (async () => {
        const fields = group.map((q) => q.fields)
        const signature = this.signBatch?.(fields)
        await this.conn.send({
          type: 'StepResults',
          results: fields.map((f) => ({ startPos: f.startPos, seqLen: f.seqLen, result: result(f) })),
          ...(signature !== undefined ? { signature } : {}),
        })
      })()
      this.settle(group, settled)
    }
  }

  private single(fields: StepSigningFields): StepResult {
    const signature = this.sign?.(fields)
    return { ...result(fields), ...(signature !== undefined ? { signature } : {}) }
  }

  private settle(group: readonly Queued[], sent: Promise<void>): void {
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

function result(f: StepSigningFields): StepResult {
  const { hidden, hiddenDtype, topk, fingerprint } = f.output
  return {
    type: 'StepResult',
    generationId: f.generationId,
    stepIndex: f.stepIndex,
    ...(hidden !== undefined ? { hidden } : {}),
    ...(hiddenDtype !== undefined ? { hiddenDtype } : {}),
    ...(topk !== undefined ? { topk } : {}),
    ...(fingerprint !== undefined ? { fingerprint } : {}),
  }
}
