import { GenerationError } from '../errors.js'
import { KvPool } from './kv-pool.js'

/** KV capacity tiers start at this many positions and double, up to the model's context. */
export const KV_BLOCK = 32

export interface KvPlace {
  readonly pool: KvPool
  readonly slot: number
}

export interface KvSlotsInit {
  readonly layers: number
  readonly kvHeads: number
  readonly headDim: number
  readonly maxContext: number
  /** See KvPool's minSlots. */
  readonly minSlots?: number
}

/**
 * A stage's KV caches, slot-based: generations of similar length share a pool (one per capacity
 * tier: KV_BLOCK positions, then doubling), so a batch reads each pool as one contiguous tensor
 * and a short generation never pays for the longest one's capacity. A generation that outgrows its tier moves
 * once to the next (a copy per doubling, as a per-generation buffer that grows would pay).
 */
export class KvSlots {
  private readonly pools = new Map<number, KvPool>()
  private readonly places = new Map<string, KvPlace>()

  constructor(private readonly init: KvSlotsInit) {}

  get size(): number {
    return this.places.size
  }

  has(id: string): boolean {
    return this.places.has(id)
  }

  /** Positions the generation holds (0 when it holds none). */
  length(id: string): number {
    const p = this.places.get(id)
    return p === undefined ? 0 : (p.pool.lengths[p.slot] as number)
  }

  /** Where the generation lives now (slots move when others leave: read it after the last reserve). */
  place(id: string): KvPlace {
    const p = this.places.get(id)
    if (p === undefined)
      throw new GenerationError('ERR_STEP_ORDER', `generation ${id} holds no KV cache here`)
    return p
  }

  /** Makes room for `needed` positions, creating the generation's slot or moving it up a tier. */
  reserve(id: string, needed: number): void {
    const { maxContext } = this.init
    if (needed > maxContext) {
      throw new GenerationError(
        'ERR_CONTEXT_OVERFLOW',
        `${needed} positions exceed the model's context of ${maxContext}`,
      )
    }
    const at = this.places.get(id)
    if (at !== undefined && needed <= at.pool.capacity) return
    let capacity = KV_BLOCK
    while (capacity < needed) capacity *= 2
    const pool = this.pool(Math.min(capacity, maxContext))
    const slot = pool.alloc(id)
    if (at !== undefined) {
      pool.copyFrom(at.pool, at.slot, slot, at.pool.lengths[at.slot] as number)
      this.free(at)
    }
    this.places.set(id, { pool, slot })
  }

  /**
   * Moves generations that share a pool onto consecutive slots, so that one run reads them
   * without padding rows between them. Slots are taken on arrival, so generations that run
   * together (one half of a pipeline's generations, say) interleave with the others; each of
   * them outside the window of slots that already holds the most of them swaps with a
   * non-member inside it. Generations that keep running together stay gathered, so it costs
   * copies once, where padding costs compute at every run. Returns the swaps made.
   */
  gather(ids: readonly string[]): number {
    const first = ids[0]
    if (first === undefined || ids.length < 2) return 0
    const { pool } = this.place(first)
    const want = new Set(ids)
    for (const id of want) {
      if (this.place(id).pool !== pool)
        throw new GenerationError('ERR_STEP_ORDER', `${id} is in another pool`)
    }
    const n = want.size
    const member = (slot: number) => want.has(pool.owners[slot] as string)
    let inside = 0
    for (let s = 0; s < n; s++) if (member(s)) inside++
    let best = inside
    let lo = 0
    for (let s = 1; s + n <= pool.used; s++) {
      if (member(s - 1)) inside--
      if (member(s + n - 1)) inside++
      if (inside > best) {
        best = inside
        lo = s
      }
    }
    if (best === n) return 0
    const holes: number[] = []
    for (let s = lo; s < lo + n; s++) if (!member(s)) holes.push(s)
    let swaps = 0
    for (let s = 0; s < pool.used; s++) {
      if ((s >= lo && s < lo + n) || !member(s)) continue
      const hole = holes[swaps++] as number
      pool.swap(s, hole)
      this.places.set(pool.owners[s] as string, { pool, slot: s })
      this.places.set(pool.owners[hole] as string, { pool, slot: hole })
    }
    return swaps
  }

  /** Records `count` more positions after their rows were written. */
  advance(id: string, count: number): void {
    const p = this.place(id)
    p.pool.lengths[p.slot] = (p.pool.lengths[p.slot] as number) + count
  }

  /** Drops positions >= length; the rows stay in the buffer and are overwritten by the next step. */
  truncate(id: string, length: number): void {
    const p = this.places.get(id)
    if (p !== undefined) p.pool.lengths[p.slot] = Math.min(p.pool.lengths[p.slot] as number, length)
  }

  end(id: string): void {
    const p = this.places.get(id)
    if (p === undefined) return
    this.places.delete(id)
    this.free(p)
  }

  clear(): void {
    for (const id of [...this.places.keys()]) this.end(id)
  }

  /** Shrinks every pool to what it needed since the last trim (KvPool.trim); never during a run. */
  trim(): void {
    for (const pool of this.pools.values()) pool.trim()
  }

  /** Bytes held by every pool's buffers. */
  get bytes(): number {
    let n = 0
    for (const pool of this.pools.values()) n += pool.bytes
    return n
  }

  private free(p: KvPlace): void {
    const moved = p.pool.release(p.slot)
    if (moved !== undefined) this.places.set(moved, { pool: p.pool, slot: p.slot })
  }

  private pool(capacity: number): KvPool {
    let pool = this.pools.get(capacity)
    if (pool === undefined) {
      const { layers, kvHeads, headDim, minSlots } = this.init
      pool = new KvPool(layers, kvHeads, headDim, capacity, minSlots)
      this.pools.set(capacity, pool)
    }
    return pool
  }
}
