/**
 * What this server last wrote of a hash it owns in Redis (its vote counts, its join tokens):
 * each sync writes only the entries that changed and drops the ones that went, and after Redis
 * lost the hash (a restart) `forget` makes the next sync write everything again.
 */
export class OwnEntries {
  private readonly written = new Map<string, string>()

  /** Whether anything has been written (an empty hash needs no renewal). */
  get any(): boolean {
    return this.written.size > 0
  }

  forget(): void {
    this.written.clear()
  }

  /** The entries of `now` (id -> JSON) that differ from what was written, and the ids gone since. */
  changes(now: ReadonlyMap<string, string>): { set: Map<string, string>; drop: string[] } {
    const set = new Map<string, string>()
    for (const [id, json] of now) if (this.written.get(id) !== json) set.set(id, json)
    const drop = [...this.written.keys()].filter((id) => !now.has(id))
    return { set, drop }
  }

  /** Records a write of `changes` that succeeded. */
  wrote({ set, drop }: { set: ReadonlyMap<string, string>; drop: readonly string[] }): void {
    for (const [id, json] of set) this.written.set(id, json)
    for (const id of drop) this.written.delete(id)
  }
}
