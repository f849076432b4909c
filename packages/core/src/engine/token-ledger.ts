import type { TopKLogits } from '../base/top-k-logits.js'
import { GenerationError } from '../errors.js'
import type { ConfirmResult, StageSession } from './inference-backend.js'
import type { Sampler, SamplerCheckpoint } from './sampler.js'

/** A sampled token not yet shown, and what it depends on. */
export interface LedgerToken {
  readonly id: number
  readonly topk: TopKLogits
  /** Positions every stage must have confirmed before it may be shown. */
  readonly needs: number
  /** The sampler before this token was drawn: a rollback past it restores this. */
  readonly before: SamplerCheckpoint
  readonly stop: boolean
}

/**
 * The coordinator's side of windowed verification for one generation: the tokens sampled so
 * far, how many were released, and the window check in flight. A token is released only once
 * every stage has confirmed every position it depends on (StageSession.confirmedLength); stages
 * that do not verify in windows confirm as they run. Only one check runs at a time; while it
 * runs, the pipeline keeps decoding ahead of it.
 */
export class TokenLedger {
  readonly tokens: LedgerToken[] = []
  released = 0
  rollbacks = 0
  rolledBackPositions = 0
  private check: { promise: Promise<ConfirmResult[]>; done: boolean; error?: unknown } | undefined

  constructor(
    private readonly id: string,
    private readonly sampler: Sampler,
    private readonly signal: AbortSignal | undefined,
  ) {}

  /** Positions all stages have confirmed, from the start. */
  confirmed(stages: readonly StageSession[], position: number): number {
    let n = position
    for (const s of stages) n = Math.min(n, s.confirmedLength?.(this.id) ?? position)
    return n
  }

  /** Starts a window check when a stage says one is due and none is running. */
  maybeCheck(stages: readonly StageSession[]): void {
    if (this.check === undefined && stages.some((s) => s.confirmDue?.(this.id) === true)) this.start(stages)
  }

  /**
   * The rollback position a finished check asks for, or undefined. With `all`, waits until every
   * position up to `position` is confirmed (or a check fails): a generation may not end on
   * unconfirmed tokens.
   */
  async settle(stages: readonly StageSession[], position: number, all: boolean): Promise<number | undefined> {
    for (;;) {
      const c = this.check
      if (c !== undefined && (all || c.done)) {
        const results = await c.promise.catch(() => undefined)
        this.check = undefined
        if (results === undefined) throw c.error
        let q = Number.POSITIVE_INFINITY
        for (const r of results) if (!r.ok) q = Math.min(q, r.rollbackTo)
        if (q !== Number.POSITIVE_INFINITY) return q
      }
      if (!all || this.confirmed(stages, position) >= position) return undefined
      this.start(stages)
    }
  }

  /** Tokens that may be shown now, in order; marks them released. */
  *releasable(stages: readonly StageSession[], position: number): Generator<LedgerToken> {
    const confirmed = this.confirmed(stages, position)
    while (this.released < this.tokens.length) {
      const t = this.tokens[this.released] as LedgerToken
      if (t.needs > confirmed || t.stop) return
      this.released++
      yield t
    }
  }

  /**
   * Forgets every token that depends on position `q` or later and rewinds the sampler to before
   * the first of them. Released tokens never do: they depended only on confirmed positions, and
   * a rollback never goes below what every stage confirmed.
   */
  cut(q: number): void {
    const keep = this.tokens.findIndex((t) => t.needs > q)
    if (keep < 0) return
    if (keep < this.released) {
      throw new GenerationError('ERR_STEP_ORDER', `rollback to ${q} would take back a token already shown`)
    }
    this.sampler.restore((this.tokens[keep] as LedgerToken).before)
    this.tokens.length = keep
  }

  /** Drops the check in flight (its stages are being replaced); its outcome no longer matters. */
  abandon(): void {
    this.check = undefined
  }

  private start(stages: readonly StageSession[]): void {
    const promise = Promise.all(
      stages.map((s) => s.confirm?.(this.id, this.signal) ?? Promise.resolve<ConfirmResult>({ ok: true })),
    )
    const c: { promise: Promise<ConfirmResult[]>; done: boolean; error?: unknown } = { promise, done: false }
    promise.then(
      () => {
        c.done = true
      },
      (err: unknown) => {
        c.done = true
        c.error = err
      },
    )
    this.check = c
  }
}
