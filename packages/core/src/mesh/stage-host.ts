import type { StageSession } from '../engine/inference-backend.js'
import type { StepSigner } from '../identity/step-signature.js'
import type { MessageConnection } from '../transport/message-connection.js'
import { type StepRequest, toWireError } from '../wire/messages.js'

export interface StageHostOptions {
  /** A generation idle this long has its KV cache freed (the coordinator may have died). */
  readonly idleTimeoutMs?: number
  /** Called after every served step, for counters and metrics. */
  readonly onStep?: (info: { generationId: string; seqLen: number; ms: number; ok: boolean }) => void
  /** Signs every StepResult (e.g. `(f) => signResult(identity, { ...f, mesh })`). */
  readonly sign?: StepSigner
}

export interface StageHost {
  /** Serves one more coordinator connection. */
  serve(connection: MessageConnection): () => void
  /** Generations with a live KV cache here. */
  readonly activeGenerations: number
  /** Resolves when no step is running (for graceful shutdown). */
  drain(): Promise<void>
  close(): void
}

/**
 * The worker side of a stage: runs StepRequests from coordinators on the local stage and
 * answers each with a StepResult or a StepError (errors keep their name and code). KV
 * caches are freed on EndGeneration, when the coordinator's connection closes, or after
 * idleTimeoutMs without a step.
 */
export function createStageHost(stage: StageSession, options: StageHostOptions = {}): StageHost {
  const idleMs = options.idleTimeoutMs ?? 5 * 60_000
  const lastUsed = new Map<string, number>()
  const owners = new Map<MessageConnection, Set<string>>()
  let inFlight = 0
  let idleWaiters: Array<() => void> = []
  const sweep = setInterval(
    () => {
      const now = Date.now()
      for (const [id, at] of lastUsed) {
        if (now - at > idleMs) end(id)
      }
    },
    Math.min(idleMs, 30_000),
  )
  ;(sweep as { unref?: () => void }).unref?.()

  function end(id: string): void {
    lastUsed.delete(id)
    stage.endGeneration(id)
  }

  async function run(conn: MessageConnection, req: StepRequest): Promise<void> {
    const started = Date.now()
    inFlight++
    lastUsed.set(req.generationId, started)
    owners.get(conn)?.add(req.generationId)
    let ok = false
    try {
      const out = await stage.step(req.generationId, {
        ...(req.tokens !== undefined ? { tokens: Array.from(req.tokens) } : {}),
        ...(req.hidden !== undefined ? { hidden: req.hidden } : {}),
        seqLen: req.seqLen,
        startPos: req.startPos,
        temperature: req.temperature,
      })
      lastUsed.set(req.generationId, Date.now())
      const signature = options.sign?.({
        generationId: req.generationId,
        stepIndex: req.stepIndex,
        startPos: req.startPos,
        seqLen: req.seqLen,
        output: out,
      })
      await conn.send({
        type: 'StepResult',
        generationId: req.generationId,
        stepIndex: req.stepIndex,
        ...(out.hidden !== undefined ? { hidden: out.hidden } : {}),
        ...(out.topk !== undefined ? { topk: out.topk } : {}),
        ...(signature !== undefined ? { signature } : {}),
      })
      ok = true
    } catch (err) {
      await conn
        .send({
          type: 'StepError',
          generationId: req.generationId,
          stepIndex: req.stepIndex,
          error: toWireError(err),
        })
        .catch(() => undefined)
    } finally {
      inFlight--
      options.onStep?.({ generationId: req.generationId, seqLen: req.seqLen, ms: Date.now() - started, ok })
      if (inFlight === 0) {
        const waiters = idleWaiters
        idleWaiters = []
        for (const w of waiters) w()
      }
    }
  }

  return {
    serve(conn) {
      const mine = new Set<string>()
      owners.set(conn, mine)
      const offMessage = conn.onMessage((msg) => {
        if (msg.type === 'StepRequest') void run(conn, msg)
        else if (msg.type === 'EndGeneration') {
          mine.delete(msg.generationId)
          end(msg.generationId)
        } else if (msg.type === 'Ping') {
          conn.send({ type: 'Pong', nonce: msg.nonce, sentAt: msg.sentAt }).catch(() => undefined)
        }
      })
      const offClose = conn.onClose(() => {
        for (const id of mine) end(id)
        owners.delete(conn)
      })
      return () => {
        offMessage()
        offClose()
      }
    },
    get activeGenerations() {
      return stage.activeGenerations
    },
    drain() {
      return inFlight === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve))
    },
    close() {
      clearInterval(sweep)
      for (const id of [...lastUsed.keys()]) end(id)
    },
  }
}
