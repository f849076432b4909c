import {
  checkTruncateLength,
  type StageSession,
  type StageStepInput,
  type StageStepOutput,
  type StepProvenance,
} from '../engine/inference-backend.js'
import { ShapedStage } from '../engine/stage-shape.js'
import { type ButterflyError, StageError } from '../errors.js'
import { isBytes, PUBLIC_KEY_BYTES } from '../identity/peer-identity.js'
import type { MessageConnection } from '../transport/message-connection.js'
import { type HiddenDtype, hiddenFields } from '../wire/hidden-dtype.js'
import type { ReceivedMessage, StepResult, StepResults } from '../wire/messages.js'
import {
  batchSignatureError,
  type Expect,
  type Pending,
  replyOutput,
  resultSignatureError,
} from './remote-reply.js'
import { RequestOutbox } from './request-outbox.js'
import { chainLinks, LateEnds, type StageChain } from './stage-chain.js'

export interface RemoteStageInit {
  readonly peerId: string
  readonly layerStart: number
  readonly layerEnd: number
  readonly isFirst: boolean
  readonly isLast: boolean
  readonly hiddenSize: number
  /** A step with no answer after this long fails with ERR_STEP_TIMEOUT. */
  readonly stepTimeoutMs: number
  /**
   * The peer's Ed25519 public key. When set, every StepResult must carry the peer's valid
   * signature for `mesh` (identity/step-signature.ts), or the step fails with ERR_STAGE_REPLY.
   */
  readonly verifyKey?: Uint8Array
  /** The mesh the peer signs for; required with verifyKey. */
  readonly mesh?: string
  /** Hidden states both ways (default fp32); with fp16 an answer in any other dtype is refused. */
  readonly hiddenDtype?: HiddenDtype
}

/**
 * The coordinator's handle on a stage that runs on another peer: each step is one
 * StepRequest out and one StepResult (or StepError) back over the peer's connection. Many
 * generations share the connection; replies are matched by (generation, step). With a chain, the
 * stage is several peers' layers in a row, and the answer comes from the last of them.
 */
export class RemoteStage extends ShapedStage implements StageSession {
  private readonly pending = new Map<string, Pending>()
  private readonly generations = new Set<string>()
  /** Per generation, its latest step answered with a fingerprint: what fetchHidden may ask for. */
  private readonly fingerprinted = new Map<string, { startPos: number; seqLen: number }>()
  private readonly unsubscribe: Array<() => void> = []
  private readonly requests: RequestOutbox
  /** Every connection of the stage: the entry, then a chain's later peers. */
  private readonly links: readonly MessageConnection[]
  /** The peer whose key signs the answers: the entry's, or a chain's last peer's. */
  private readonly answerer: string
  private readonly lateEnds = new LateEnds()
  private gone: Error | undefined

  constructor(
    private readonly init: RemoteStageInit,
    private readonly connection: MessageConnection,
    private readonly chain?: StageChain,
  ) {
    super(init)
    if (
      init.verifyKey !== undefined &&
      !(isBytes(init.verifyKey, PUBLIC_KEY_BYTES) && init.mesh !== undefined)
    ) {
      throw new StageError(
        'ERR_STAGE_REPLY',
        `verifyKey must be ${PUBLIC_KEY_BYTES} bytes, with the mesh name`,
      )
    }
    this.requests = new RequestOutbox(connection)
    this.links = chainLinks(connection, chain)
    // Only the peer that runs the last layers answers; the others can only report errors.
    const answering = this.links[this.links.length - 1]
    this.answerer = chain?.route[chain.route.length - 1] ?? init.peerId
    for (const link of this.links) {
      this.unsubscribe.push(
        link.onMessage((msg) => {
          if (link === answering || msg.type === 'StepError') this.receive(msg)
        }),
        link.onClose((reason) => this.fail(reason)),
      )
    }
  }

  get peerId(): string {
    return this.init.peerId
  }

  get activeGenerations(): number {
    return this.generations.size
  }

  async step(generationId: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    // A chained stage takes no fingerprint challenge: validation refuses the two together.
    const challenge = input.fingerprint?.challenge
    this.fingerprinted.delete(generationId)
    const out = await this.request(
      generationId,
      input.startPos,
      input.seqLen,
      challenge === undefined ? 'output' : { challenge },
      {
        type: 'StepRequest',
        generationId,
        stepIndex: input.startPos,
        startPos: input.startPos,
        seqLen: input.seqLen,
        temperature: input.temperature ?? 0,
        deadlineMs: this.init.stepTimeoutMs,
        ...(input.tokens !== undefined ? { tokens: Int32Array.from(input.tokens) } : {}),
        ...hiddenFields(input.hidden, this.init.hiddenDtype),
        ...(challenge !== undefined ? { fingerprintChallenge: challenge } : {}),
        ...(this.init.isLast && input.candidates !== undefined ? { candidates: input.candidates } : {}),
        ...(this.chain !== undefined ? { route: [...this.chain.route], replyTo: this.chain.replyTo } : {}),
      },
      signal,
    )
    if (challenge !== undefined)
      this.fingerprinted.set(generationId, { startPos: input.startPos, seqLen: input.seqLen })
    return out
  }

  provenance(generationId: string): StepProvenance | undefined {
    if (!this.generations.has(generationId)) return undefined
    const peers = [this.init.peerId, ...(this.chain?.route ?? [])]
    return { peers, agreeing: [], disagreeing: [], spotChecked: false }
  }

  /** The full state behind the generation's latest fingerprinted step (FetchHidden). */
  async fetchHidden(generationId: string, startPos: number, signal?: AbortSignal): Promise<Float32Array> {
    const step = this.fingerprinted.get(generationId)
    if (this.init.isLast) {
      throw new StageError(
        'ERR_HIDDEN_UNAVAILABLE',
        `the last stage on ${this.init.peerId} has no hidden output to fetch: it answers fingerprints with token rows`,
      )
    }
    if (step?.startPos !== startPos) {
      throw new StageError(
        'ERR_HIDDEN_UNAVAILABLE',
        `no fingerprinted step of generation ${generationId} at position ${startPos} on ${this.init.peerId}`,
      )
    }
    const out = await this.request(
      generationId,
      startPos,
      step.seqLen,
      'fetched',
      { type: 'FetchHidden', generationId, stepIndex: startPos },
      signal,
    )
    return out.hidden as Float32Array
  }

  /** Sends one request and waits for its StepResult (or StepError), under the step deadline. */
  private async request(
    generationId: string,
    startPos: number,
    seqLen: number,
    expect: Expect,
    message: Parameters<MessageConnection['send']>[0],
    signal: AbortSignal | undefined,
  ): Promise<StageStepOutput> {
    signal?.throwIfAborted()
    if (this.gone !== undefined) throw this.goneError()
    const key = `${generationId}:${startPos}`
    if (this.pending.has(key)) throw new StageError('ERR_STAGE_REPLY', `step ${key} is already in flight`)
    this.generations.add(generationId)
    let done = (): void => undefined
    const settled = new Promise<void>((resolve) => {
      done = resolve
    })
    const reply = new Promise<StageStepOutput>((resolve, reject) =>
      this.pending.set(key, { startPos, seqLen, expect, done: settled, resolve, reject }),
    )
    const timeout = this.init.stepTimeoutMs
    let timer: ReturnType<typeof setTimeout> | undefined
    const onAbort = () => {
      // A chained step cancelled in flight may still land on later peers: see LateEnds.
      if (this.chain !== undefined && this.pending.has(key)) this.lateEnds.note(key)
      this.settle(key, undefined, signal?.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      timer = setTimeout(
        () =>
          this.settle(
            key,
            undefined,
            new StageError(
              'ERR_STEP_TIMEOUT',
              `peer ${this.init.peerId} did not answer step ${key} in ${timeout} ms`,
            ),
          ),
        timeout,
      )
      if (message.type === 'StepRequest') await this.requests.send(message, signal)
      else {
        this.requests.flush()
        await this.connection.send(message, signal)
      }
      return await reply
    } catch (err) {
      this.pending.delete(key)
      throw err
    } finally {
      done()
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
  }

  /**
   * Sends a Truncate once every request of the generation pending here is settled (so the peer got
   * those first); resolves once sent. A no-op for a generation this stage never stepped. Fails with
   * ERR_STAGE_BUSY if a step of the generation started while it waited.
   */
  async truncate(generationId: string, length: number, signal?: AbortSignal): Promise<void> {
    checkTruncateLength(generationId, length)
    signal?.throwIfAborted()
    if (this.gone !== undefined) throw this.goneError()
    const waiting = this.pendingOf(generationId)
    if (waiting.length > 0) {
      await Promise.all(waiting)
      signal?.throwIfAborted()
      if (this.gone !== undefined) throw this.goneError()
      if (this.pendingOf(generationId).length > 0) {
        throw new StageError(
          'ERR_STAGE_BUSY',
          `a step of generation ${generationId} started on ${this.init.peerId} while a truncate waited`,
        )
      }
    }
    if (!this.generations.has(generationId)) return
    const fp = this.fingerprinted.get(generationId)
    if (fp !== undefined && fp.startPos >= length) this.fingerprinted.delete(generationId)
    // The peer takes a u32; a longer length than any generation can hold truncates nothing.
    this.requests.flush()
    const truncate = { type: 'Truncate', generationId, length: Math.min(length, 0xffffffff) } as const
    await Promise.all(this.links.map((link) => link.send(truncate, signal)))
  }

  /** What settles when the generation's pending requests here are done. */
  private pendingOf(generationId: string): Promise<void>[] {
    const prefix = `${generationId}:`
    return [...this.pending].filter(([key]) => key.startsWith(prefix)).map(([, p]) => p.done)
  }

  endGeneration(generationId: string): void {
    this.fingerprinted.delete(generationId)
    if (!this.generations.delete(generationId) || this.gone !== undefined) return
    this.end(generationId)
  }

  private end(generationId: string): void {
    this.requests.flush()
    for (const link of this.links) link.send({ type: 'EndGeneration', generationId }).catch(() => undefined)
  }

  async dispose(): Promise<void> {
    for (const off of this.unsubscribe) off()
    this.fail(new StageError('ERR_STAGE_GONE', `stage on ${this.init.peerId} was disposed`))
  }

  private receive(msg: ReceivedMessage): void {
    if (msg.type === 'StepResults') {
      this.receiveBatch(msg)
      return
    }
    if (msg.type !== 'StepResult' && msg.type !== 'StepError') return
    const key = `${msg.generationId}:${msg.stepIndex}`
    // A late answer to a cancelled step: the generation, if ended, is ended again after it.
    if (this.lateEnds.take(key) && !this.generations.has(msg.generationId)) this.end(msg.generationId)
    if (msg.type === 'StepError') {
      this.settle(key, undefined, msg.error)
      return
    }
    const p = this.pending.get(key)
    if (p === undefined) return // late or unsolicited: ignored
    // A peer that answers with the wrong kind of output is as bad as one that lies.
    const out = replyOutput(this.init, msg, p)
    if (out instanceof StageError) {
      this.settle(key, undefined, out)
      return
    }
    const unsigned = resultSignatureError({ ...this.init, peerId: this.answerer }, msg, p)
    if (unsigned !== undefined) this.settle(key, undefined, unsigned)
    else this.settle(key, out)
  }

  /** A batched run's results: one signature, checked once, fails them all; a wrong length is refused. */
  private receiveBatch(msg: StepResults): void {
    const key = (r: StepResult) => `${r.generationId}:${r.stepIndex}`
    for (const { result: r } of msg.results)
      if (this.lateEnds.take(key(r)) && !this.generations.has(r.generationId)) this.end(r.generationId)
    // Another stage's batch on a shared connection (an older plan's session): not ours to check.
    if (!msg.results.some((i) => this.pending.has(key(i.result)))) return
    const unsigned = batchSignatureError({ ...this.init, peerId: this.answerer }, msg)
    if (unsigned !== undefined) {
      for (const i of msg.results) this.settle(key(i.result), undefined, unsigned)
      return
    }
    for (const item of msg.results) {
      const k = key(item.result)
      const p = this.pending.get(k)
      if (p === undefined) continue
      const out =
        p.startPos === item.startPos && p.seqLen === item.seqLen
          ? replyOutput(this.init, item.result, p)
          : new StageError('ERR_STAGE_REPLY', `peer ${this.init.peerId} sent a result for another step`)
      if (out instanceof StageError) this.settle(k, undefined, out)
      else this.settle(k, out)
    }
  }

  private settle(key: string, out?: StageStepOutput, err?: unknown): void {
    const p = this.pending.get(key)
    if (p === undefined) return // late or unsolicited: ignored
    this.pending.delete(key)
    if (err !== undefined) p.reject(err)
    else p.resolve(out ?? {})
  }

  private fail(reason?: Error): void {
    if (this.gone !== undefined) return
    this.gone = reason ?? new Error('connection closed')
    const err = this.goneError()
    for (const p of this.pending.values()) p.reject(err)
    this.pending.clear()
    this.generations.clear()
  }

  private goneError(): ButterflyError {
    return new StageError(
      'ERR_STAGE_GONE',
      `peer ${this.init.peerId} went away: ${this.gone?.message ?? 'closed'}`,
    )
  }
}
