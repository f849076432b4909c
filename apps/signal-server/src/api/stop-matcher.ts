/**
 * Applies OpenAI `stop` sequences to streamed text. Text that might be the start of a stop
 * sequence is held back until the next piece shows whether it is one, so a client never sees
 * part of a stop sequence.
 */
export class StopMatcher {
  private pending = ''
  private done = false

  constructor(private readonly stops: readonly string[]) {}

  get stopped(): boolean {
    return this.done
  }

  /** Feeds decoded text; returns what may be emitted now. */
  push(text: string): string {
    if (this.done) return ''
    this.pending += text
    if (this.stops.length === 0) return this.take(this.pending.length)
    let cut = -1
    for (const s of this.stops) {
      const i = this.pending.indexOf(s)
      if (i >= 0 && (cut < 0 || i < cut)) cut = i
    }
    if (cut >= 0) {
      this.done = true
      const out = this.pending.slice(0, cut)
      this.pending = ''
      return out
    }
    return this.take(this.pending.length - this.heldBack())
  }

  /** Everything still held back (the generation ended without a stop sequence). */
  flush(): string {
    if (this.done) return ''
    return this.take(this.pending.length)
  }

  /** Length of the longest suffix of pending text that is a proper prefix of a stop sequence. */
  private heldBack(): number {
    let keep = 0
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > keep; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          keep = n
          break
        }
      }
    }
    return keep
  }

  private take(n: number): string {
    const out = this.pending.slice(0, n)
    this.pending = this.pending.slice(n)
    return out
  }
}
