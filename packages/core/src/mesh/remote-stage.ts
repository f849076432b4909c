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
import { verifyResult } from '../identity/step-signature.js'
import type { MessageConnection } from '../transport/message-connection.js'
import { decodeFingerprint } from '../verify/fingerprint-codec.js'
import { decodeTokenRows } from '../verify/token-rows.js'
import { type HiddenDtype, hiddenFields } from '../wire/hidden-dtype.js'
import type { ReceivedMessage } from '../wire/messages.js'

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

/** What a reply must carry: the stage's output, a fingerprint of it, or a fetched hidden state. */
type Expect = 'output' | { readonly challenge: number } | 'fetched'

interface Pending {
  readonly startPos: number
  readonly seqLen: number
  readonly expect: Expect
  /** Settles (never rejects) once the request is answered, failed or given up. */
  readonly done: Promise<void>
  resolve(out: StageStepOutput): void
  reject(err: unknown): void
}

/**
 * The coordinator's handle on a stage that runs on another peer: each step is one
 * StepRequest out and one StepResult (or StepError) back over the peer's connection. Many
 * generations share the connection; replies are matched by (generation, step).
 */
export class RemoteStage extends ShapedStage implements StageSession {
  private readonly pending = new Map<string, Pending>()
  private readonly generations = new Set<string>()
  /** Per generation, its latest step answered with a fingerprint: what fetchHidden may ask for. */
  private readonly fingerprinted = new Map<string, { startPos: number; seqLen: number }>()
  private readonly unsubscribe: Array<() => void> = []
  private gone: Error | undefined

  constructor(
    private readonly init: RemoteStageInit,
    private readonly connection: MessageConnection,
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
    this.unsubscribe.push(
      connection.onMessage((msg) => this.receive(msg)),
      connection.onClose((reason) => this.fail(reason)),
    )
  }

  get peerId(): string {
    return this.init.peerId
  }

  get activeGenerations(): number {
    return this.generations.size
  }

  async step(generationId: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
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
      },
      signal,
    )
    if (challenge !== undefined)
      this.fingerprinted.set(generationId, { startPos: input.startPos, seqLen: input.seqLen })
    return out
  }

  provenance(generationId: string): StepProvenance | undefined {
    if (!this.generations.has(generationId)) return undefined
    return { peers: [this.init.peerId], agreeing: [], disagreeing: [], spotChecked: false }
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
    const onAbort = () => this.settle(key, undefined, signal?.reason)
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
      await this.connection.send(message, signal)
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
   * Sends a Truncate once every request of the generation pending here is settled (so the peer
   * received those first); resolves once sent. A no-op for a generation this stage never stepped.
   * Fails with ERR_STAGE_BUSY if a step of the generation started while it waited.
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
    await this.connection.send(
      { type: 'Truncate', generationId, length: Math.min(length, 0xffffffff) },
      signal,
    )
  }

  /** What settles when the generation's pending requests here are done. */
  private pendingOf(generationId: string): Promise<void>[] {
    const prefix = `${generationId}:`
    return [...this.pending].filter(([key]) => key.startsWith(prefix)).map(([, p]) => p.done)
  }

  endGeneration(generationId: string): void {
    this.fingerprinted.delete(generationId)
    if (!this.generations.delete(generationId) || this.gone !== undefined) return
    this.connection.send({ type: 'EndGeneration', generationId }).catch(() => undefined)
  }

  async dispose(): Promise<void> {
    for (const off of this.unsubscribe) off()
    this.fail(new StageError('ERR_STAGE_GONE', `stage on ${this.init.peerId} was disposed`))
  }

  private receive(msg: ReceivedMessage): void {
    if (msg.type !== 'StepResult' && msg.type !== 'StepError') return
    const key = `${msg.generationId}:${msg.stepIndex}`
    if (msg.type === 'StepError') {
      this.settle(key, undefined, msg.error)
      return
    }
    const p = this.pending.get(key)
    if (p === undefined) return // late or unsolicited: ignored
    // A peer that answers with the wrong kind of output is as bad as one that lies.
    const out = this.outputOf(msg, p)
    if (out instanceof StageError) {
      this.settle(key, undefined, out)
      return
    }
    const { verifyKey, mesh } = this.init
    if (verifyKey !== undefined && mesh !== undefined) {
      const { generationId, stepIndex } = msg
      const fields = { mesh, generationId, stepIndex, startPos: p.startPos, seqLen: p.seqLen, output: msg }
      if (msg.signature === undefined || !verifyResult(verifyKey, fields, msg.signature)) {
        const why = msg.signature === undefined ? 'an unsigned' : 'a wrongly signed'
        this.settle(
          key,
          undefined,
          new StageError('ERR_STAGE_REPLY', `peer ${this.init.peerId} sent ${why} result`),
        )
        return
      }
    }
    this.settle(key, out)
  }

  /** The reply's output if it is what the request asked for, else the error to fail it with. */
  private outputOf(msg: ReceivedMessage & { type: 'StepResult' }, p: Pending): StageStepOutput | StageError {
    const wrong = (what: string) => new StageError('ERR_STAGE_REPLY', `peer ${this.init.peerId} sent ${what}`)
    const { hiddenSize } = this.init
    const [got, asked] = [msg.hiddenDtype ?? 'fp32', this.init.hiddenDtype ?? 'fp32']
    // Fingerprints are of the values as they travel: a state in another dtype is not comparable.
    if (msg.hidden !== undefined && got !== asked)
      return wrong(`${got} hidden state where ${asked} was asked`)
    if (p.expect === 'output') {
      if (msg.fingerprint !== undefined) return wrong('a fingerprint nobody asked for')
      if (this.init.isLast)
        return msg.topk !== undefined ? { topk: msg.topk } : wrong('the wrong output kind')
      if (msg.hidden === undefined) return wrong('the wrong output kind')
      return { hidden: msg.hidden }
    }
    if (p.expect === 'fetched') {
      if (msg.hidden?.length !== p.seqLen * hiddenSize || msg.fingerprint !== undefined) {
        return wrong('a fetched state of the wrong shape')
      }
      return { hidden: msg.hidden }
    }
    if (msg.fingerprint === undefined || msg.hidden !== undefined || msg.topk !== undefined) {
      return wrong('no fingerprint where one was asked for')
    }
    if (this.init.isLast) {
      try {
        const tokenRows = decodeTokenRows(msg.fingerprint)
        if (tokenRows.seqLen !== p.seqLen) return wrong('token rows of another length')
        return { tokenRows }
      } catch (err) {
        return wrong(`malformed token rows (${(err as Error).message})`)
      }
    }
    try {
      const fp = decodeFingerprint(msg.fingerprint)
      if (fp.seqLen !== p.seqLen || fp.hiddenSize !== hiddenSize || fp.challenge !== p.expect.challenge) {
        return wrong('a fingerprint of another shape or challenge')
      }
      return { fingerprint: fp }
    } catch (err) {
      return wrong(`a malformed fingerprint (${(err as Error).message})`)
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
