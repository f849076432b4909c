import type { TopKLogits } from '../base/top-k-logits.js'

/**
 * OpenAI's frequency and presence penalties over the tokens generated so far:
 * `logit[j] -= count[j] * frequency + (count[j] > 0) * presence`, and its `logit_bias`:
 * `logit[j] += bias[j]`.
 *
 * The last stage returns only its top-k logits, so the penalties can only touch those
 * candidates. Positive penalties are exact for greedy and top-k sampling all the same: they only
 * lower logits, so a token outside the top-k (already below every candidate) can never overtake
 * an unpenalised candidate; only once every candidate has been generated before could an outside
 * token have been the better one. A negative penalty raises seen tokens, and a seen token outside
 * the top-k is not raised into it: negative penalties act within the top-k only. The same holds
 * for biases: a negative bias (a ban, at -100) is exact in that sense, a positive one raises a
 * token only when it is already a candidate.
 */
export class LogitPenalties {
  private readonly counts = new Map<number, number>()

  private readonly bias: ReadonlyMap<number, number>

  constructor(
    readonly frequency: number,
    readonly presence: number,
    bias: Readonly<Record<number, number>> = {},
  ) {
    this.bias = new Map(
      Object.entries(bias)
        .map(([id, b]) => [Number(id), b] as const)
        .filter(([, b]) => b !== 0),
    )
  }

  get active(): boolean {
    return this.frequency !== 0 || this.presence !== 0 || this.bias.size > 0
  }

  /** The counts so far, for a rollback to restore. */
  saveCounts(): ReadonlyMap<number, number> {
    return new Map(this.counts)
  }

  restoreCounts(saved: ReadonlyMap<number, number>): void {
    this.counts.clear()
    for (const [id, n] of saved) this.counts.set(id, n)
  }

  /** Notes a generated token. */
  observe(id: number): void {
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1)
  }

  /**
   * The penalised candidates, re-sorted as TopKLogits are (descending, equal values lower id
   * first), with `logSumExp` (taken at `temperature`, 0 meaning 1) moved by
   * exactly the change to the candidates: the rest of the vocabulary is left as it was.
   */
  apply(logits: TopKLogits, temperature: number): TopKLogits {
    if (!this.active || (this.counts.size === 0 && this.bias.size === 0)) return logits
    const t = temperature === 0 ? 1 : temperature
    const n = logits.values.length
    const order: Array<{ v: number; id: number; before: number }> = []
    let changed = false
    for (let i = 0; i < n; i++) {
      const id = logits.ids[i] as number
      const before = logits.values[i] as number
      const c = this.counts.get(id) ?? 0
      const penalty = c === 0 ? 0 : c * this.frequency + this.presence
      const bias = this.bias.get(id) ?? 0
      const v = penalty === 0 && bias === 0 ? before : Math.fround(before + bias - penalty)
      if (v !== before) changed = true
      order.push({ v, id, before })
    }
    if (!changed) return logits
    order.sort((a, b) => b.v - a.v || a.id - b.id)
    const values = Float32Array.from(order, (o) => o.v)
    const ids = Int32Array.from(order, (o) => o.id)
    // Shift everything by the new top so the exponentials stay in range.
    const shift = Math.max(values[0] as number, logits.values[0] as number) / t
    let before = 0
    let after = 0
    for (let i = 0; i < n; i++) {
      before += Math.exp((order[i] as { before: number }).before / t - shift)
      after += Math.exp((values[i] as number) / t - shift)
    }
    const tail = Math.max(0, Math.exp(logits.logSumExp - shift) - before)
    return { values, ids, logSumExp: shift + Math.log(tail + after) }
  }
}
