import type { StageSession } from '../engine/inference-backend.js'
import { StageError } from '../errors.js'
import type { StepBatchSigner, StepSigner } from '../identity/step-signature.js'
import type { MessageConnection } from '../transport/message-connection.js'
import { encodeFingerprint } from '../verify/fingerprint-codec.js'
import { encodeTokenRows } from '../verify/token-rows.js'
import {
  type FetchHidden,
  type StepRequest,
  type StepResult,
  type Truncate,
  toWireError,
} from '../wire/messages.js'
import { FingerprintingStage } from './fingerprinting-stage.js'
import { ResultOutbox } from './result-outbox.js'
import { type StageLinks, StepForwarder } from './step-forwarder.js'

export interface StageHostOptions {
  /** A generation idle this long has its KV cache freed (the coordinator may have died). */
  readonly idleTimeoutMs?: number
  /** Called after every served step, for counters and metrics. */
  readonly onStep?: (info: { generationId: string; seqLen: number; ms: number; ok: boolean }) => void
  /** Signs every StepResult (e.g. `(f) => signResult(identity, { ...f, mesh })`). */
  readonly sign?: StepSigner
  /**
   * Signs the results of a batched run sent as one StepResults (e.g.
   * `(fs) => signResults(identity, mesh, fs)`); without it, results go out one by one.
   */
  readonly signBatch?: StepBatchSigner
  /** Worker-to-worker links for chained steps; without them a routed request fails ERR_CHAIN_LINK. */
  readonly links?: StageLinks
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
 * answers each with a StepResult or a StepError (errors keep their name and code). A request
 * with a fingerprint challenge is answered with the fingerprint, and the output waits for a
 * FetchHidden from the same connection. A Truncate from the connection that owns the generation
 * rolls its KV cache back after the steps of it received before; it has no reply (a later step
 * at the wrong position fails with ERR_STEP_ORDER). KV caches are freed on EndGeneration, when
 * the coordinator's connection closes, or after idleTimeoutMs without a step.
 */
export function createStageHost(local: StageSession, options: StageHostOptions = {}): StageHost {
  const stage = new FingerprintingStage(local)
  const idleMs = options.idleTimeoutMs ?? 5 * 60_000
  const lastUsed = new Map<string, number>()
  /** Per generation, its latest step answered with a fingerprint, and the dtype it asked for. */
  const fingerprinted = new Map<string, { stepIndex: number; startPos: number; fp16: boolean }>()
  const owners = new Map<MessageConnection, Set<string>>()
  const outboxes = new Map<MessageConnection, ResultOutbox>()
  /** Per generation, the stage work (steps, truncates) received so far, settled or not. */
  const chains = new Map<string, Promise<void>>()
  const forwarder = new StepForwarder(options.links)
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
    fingerprinted.delete(id)
    stage.endGeneration(id)
  }

  /**
   * Runs `task` after the generation's earlier stage work; at once (synchronously) when there is
   * none, so the stage itself queues it in arrival order.
   */
  function inOrder<T>(id: string, task: () => Promise<T>): Promise<T> {
    const before = chains.get(id)
    let work: Promise<T>
    if (before !== undefined) work = before.then(task)
    else {
      try {
        work = task()
      } catch (err) {
        work = Promise.reject(err)
      }
    }
    const settled = work.then(
      () => undefined,
      () => undefined,
    )
    chains.set(id, settled)
    void settled.then(() => {
      if (chains.get(id) === settled) chains.delete(id)
    })
    return work
  }

  /** Rolls back a generation of this connection; anything else is ignored, as are failures. */
  function truncate(req: Truncate, mine: Set<string>): void {
    const id = req.generationId
    if (!mine.has(id)) return
    lastUsed.set(id, Date.now())
    inOrder(id, () => {
      const step = fingerprinted.get(id)
      if (step !== undefined && step.startPos >= req.length) fingerprinted.delete(id)
      return stage.truncate(id, req.length)
    }).catch(() => undefined)
  }

  async function run(from: MessageConnection, req: StepRequest): Promise<void> {
    // A chained step answers its coordinator, which owns the generation here, not the sender.
    const answer = req.replyTo === undefined ? from : forwarder.answerTo(from, req)
    if (answer instanceof StageError) return void sendError(from, req, answer)
    if (answer === undefined) return
    const conn = answer
    const started = Date.now()
    inFlight++
    lastUsed.set(req.generationId, started)
    owners.get(conn)?.add(req.generationId)
    let ok = false
    // The answer's hidden state uses the request's dtype; the stage rounds it (and its fingerprint).
    const fp16 = req.hiddenDtype === 'fp16'
    try {
      const out = await inOrder(req.generationId, async () => {
        const done = await stage.step(
          req.generationId,
          {
            ...(req.tokens !== undefined ? { tokens: Array.from(req.tokens) } : {}),
            ...(req.hidden !== undefined ? { hidden: req.hidden } : {}),
            seqLen: req.seqLen,
            startPos: req.startPos,
            temperature: req.temperature,
            ...(req.fingerprintChallenge !== undefined
              ? { fingerprint: { challenge: req.fingerprintChallenge } }
              : {}),
            ...(req.candidates !== undefined ? { candidates: req.candidates } : {}),
          },
          undefined,
          req.hiddenDtype,
        )
        // Recorded before the generation's next work (a Truncate may drop it) starts.
        if (done.fingerprint !== undefined) {
          fingerprinted.set(req.generationId, { stepIndex: req.stepIndex, startPos: req.startPos, fp16 })
        }
        return done
      })
      lastUsed.set(req.generationId, Date.now())
      // The last stage's token rows travel in the same fingerprint bytes; their magic tells them apart.
      const fingerprint =
        out.fingerprint !== undefined
          ? encodeFingerprint(out.fingerprint)
          : out.tokenRows !== undefined
            ? encodeTokenRows(out.tokenRows)
            : undefined
      const output =
        fingerprint !== undefined
          ? { fingerprint }
          : out.hidden !== undefined
            ? hiddenOutput(out.hidden, fp16)
            : out.topk !== undefined
              ? { topk: out.topk }
              : {}
      if (req.route !== undefined && req.route.length > 0) {
        if (out.hidden === undefined) throw new StageError('ERR_CHAIN_LINK', 'the last stage cannot forward')
        await forwarder.forward(req, out.hidden, conn)
      } else await reply(conn, req, req.seqLen, output)
      ok = true
    } catch (err) {
      await sendError(conn, req, err)
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

  /** A signed StepResult for the step at req.stepIndex. */
  async function reply(
    conn: MessageConnection,
    req: { generationId: string; stepIndex: number; startPos: number },
    seqLen: number,
    output: Pick<StepResult, 'hidden' | 'hiddenDtype' | 'topk' | 'fingerprint'>,
  ): Promise<void> {
    let outbox = outboxes.get(conn)
    if (outbox === undefined) {
      outbox = new ResultOutbox(conn, options.sign, options.signBatch)
      outboxes.set(conn, outbox)
    }
    await outbox.send({
      generationId: req.generationId,
      stepIndex: req.stepIndex,
      startPos: req.startPos,
      seqLen,
      output,
    })
  }

  function sendError(
    conn: MessageConnection,
    req: { generationId: string; stepIndex: number },
    err: unknown,
  ) {
    return conn
      .send({
        type: 'StepError',
        generationId: req.generationId,
        stepIndex: req.stepIndex,
        error: toWireError(err),
      })
      .catch(() => undefined)
  }

  /** The kept output of a fingerprinted step, only to the connection that ran it. */
  async function fetch(conn: MessageConnection, req: FetchHidden, mine: Set<string>): Promise<void> {
    try {
      const step = fingerprinted.get(req.generationId)
      if (stage.isLast) {
        throw new StageError(
          'ERR_HIDDEN_UNAVAILABLE',
          'FetchHidden is unsupported on the last stage: it answers fingerprints with token rows',
        )
      }
      if (!mine.has(req.generationId) || step?.stepIndex !== req.stepIndex) {
        throw new StageError(
          'ERR_HIDDEN_UNAVAILABLE',
          `no kept output of this connection's generation ${req.generationId}, step ${req.stepIndex}`,
        )
      }
      const kept = stage.keptStep(req.generationId, step.startPos)
      // Kept already rounded when its step asked for fp16: these are the values fingerprinted.
      await reply(
        conn,
        { ...req, startPos: step.startPos },
        kept.seqLen,
        hiddenOutput(kept.hidden, step.fp16),
      )
    } catch (err) {
      await sendError(conn, req, err)
    }
  }

  function hiddenOutput(hidden: Float32Array, fp16: boolean): Pick<StepResult, 'hidden' | 'hiddenDtype'> {
    return fp16 ? { hidden, hiddenDtype: 'fp16' } : { hidden }
  }

  return {
    serve(conn) {
      const mine = new Set<string>()
      owners.set(conn, mine)
      const offMessage = conn.onMessage((msg) => {
        if (msg.type === 'StepRequest') void run(conn, msg)
        else if (msg.type === 'StepRequests') for (const r of msg.requests) void run(conn, r)
        else if (msg.type === 'FetchHidden') void fetch(conn, msg, mine)
        else if (msg.type === 'Truncate') truncate(msg, mine)
        else if (msg.type === 'EndGeneration') {
          mine.delete(msg.generationId)
          end(msg.generationId)
        } else if (msg.type === 'StepError') forwarder.relayError(conn, msg)
        else if (msg.type === 'Ping') {
          conn.send({ type: 'Pong', nonce: msg.nonce, sentAt: msg.sentAt }).catch(() => undefined)
        }
      })
      const offClose = conn.onClose(() => {
        for (const id of mine) end(id)
        owners.delete(conn)
        outboxes.delete(conn)
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
