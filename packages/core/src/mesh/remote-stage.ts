import type { StageSession, StageStepInput, StageStepOutput } from '../engine/inference-backend.js'
import { type ButterflyError, StageError } from '../errors.js'
import { isBytes, PUBLIC_KEY_BYTES } from '../identity/peer-identity.js'
import { verifyResult } from '../identity/step-signature.js'
import type { MessageConnection } from '../transport/message-connection.js'
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
}

interface Pending {
  readonly startPos: number
  readonly seqLen: number
  resolve(out: StageStepOutput): void
  reject(err: unknown): void
}

/**
 * The coordinator's handle on a stage that runs on another peer: each step is one
 * StepRequest out and one StepResult (or StepError) back over the peer's connection. Many
 * generations share the connection; replies are matched by (generation, step).
 */
export class RemoteStage implements StageSession {
  readonly layerStart: number
  readonly layerEnd: number
  readonly isFirst: boolean
  readonly isLast: boolean
  private readonly pending = new Map<string, Pending>()
  private readonly generations = new Set<string>()
  private readonly unsubscribe: Array<() => void> = []
  private gone: Error | undefined

  constructor(
    private readonly init: RemoteStageInit,
    private readonly connection: MessageConnection,
  ) {
    this.layerStart = init.layerStart
    this.layerEnd = init.layerEnd
    this.isFirst = init.isFirst
    this.isLast = init.isLast
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
    signal?.throwIfAborted()
    if (this.gone !== undefined) throw this.goneError()
    const stepIndex = input.startPos
    const key = `${generationId}:${stepIndex}`
    if (this.pending.has(key)) throw new StageError('ERR_STAGE_REPLY', `step ${key} is already in flight`)
    this.generations.add(generationId)
    const reply = new Promise<StageStepOutput>((resolve, reject) =>
      this.pending.set(key, { startPos: input.startPos, seqLen: input.seqLen, resolve, reject }),
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
      await this.connection.send(
        {
          type: 'StepRequest',
          generationId,
          stepIndex,
          startPos: input.startPos,
          seqLen: input.seqLen,
          temperature: input.temperature ?? 0,
          deadlineMs: timeout,
          ...(input.tokens !== undefined ? { tokens: Int32Array.from(input.tokens) } : {}),
          ...(input.hidden !== undefined ? { hidden: input.hidden } : {}),
        },
        signal,
      )
      return await reply
    } catch (err) {
      this.pending.delete(key)
      throw err
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
  }

  endGeneration(generationId: string): void {
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
    // A peer that answers with the wrong kind of output is as bad as one that lies.
    const wantHidden = !this.init.isLast
    if (wantHidden ? msg.hidden === undefined : msg.topk === undefined) {
      this.settle(
        key,
        undefined,
        new StageError('ERR_STAGE_REPLY', `peer ${this.init.peerId} sent the wrong output kind`),
      )
      return
    }
    const { verifyKey, mesh } = this.init
    const p = this.pending.get(key)
    if (verifyKey !== undefined && mesh !== undefined && p !== undefined) {
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
    this.settle(
      key,
      msg.hidden !== undefined ? { hidden: msg.hidden } : msg.topk !== undefined ? { topk: msg.topk } : {},
    )
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
