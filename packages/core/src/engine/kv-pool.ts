/**
 * One capacity tier of a stage's KV cache: per layer, a keys and a values buffer laid out
 * [slots, kvHeads, capacity, headDim], one slot per generation. Occupied slots are always the
 * prefix [0, used): freeing a slot moves the last one into it, so a batch over any run of
 * consecutive slots is a contiguous view of each buffer, fed to the runtime without a copy.
 */
export class KvPool {
  /** Slot index → the generation holding it; its length is the number of occupied slots. */
  readonly owners: string[] = []
  /** Slot index → positions held. */
  readonly lengths: number[] = []
  private allocated = 0
  /** The most slots used since the last trim. */
  private peak = 0
  private keys: Float32Array[] = []
  private values: Float32Array[] = []
  /** One head's positions of a slot, while two slots swap. */
  private scratch = new Float32Array(0)

  constructor(
    private readonly layers: number,
    private readonly heads: number,
    private readonly headDim: number,
    /** Positions per slot. */
    readonly capacity: number,
    /** Slots never shrink below this (2 where a batch must never run a single row). */
    private readonly minSlots = 1,
  ) {}

  get used(): number {
    return this.owners.length
  }

  /** Slots the buffers have room for; slots past `used` are spare (batch padding may read them). */
  get slots(): number {
    return this.allocated
  }

  /** Floats one slot takes in one layer's keys (or values). */
  get slotFloats(): number {
    return this.heads * this.capacity * this.headDim
  }

  /** Bytes the buffers hold. */
  get bytes(): number {
    return this.allocated * this.slotFloats * this.layers * 2 * 4
  }

  alloc(id: string): number {
    if (this.used === this.allocated) this.resize(Math.max(this.minSlots, this.allocated * 2, 1))
    this.owners.push(id)
    this.lengths.push(0)
    this.peak = Math.max(this.peak, this.used)
    return this.used - 1
  }

  /** Frees `slot`; returns the generation moved into it from the last slot, if any. */
  release(slot: number): string | undefined {
    const last = this.used - 1
    let moved: string | undefined
    if (slot !== last) {
      const f = this.slotFloats
      for (const buf of [...this.keys, ...this.values]) buf.copyWithin(slot * f, last * f, (last + 1) * f)
      moved = this.owners[last] as string
      this.owners[slot] = moved
      this.lengths[slot] = this.lengths[last] as number
    }
    this.owners.pop()
    this.lengths.pop()
    return moved
  }

  /**
   * Gives back memory the pool has not needed since the last trim: it halves while three
   * quarters of its slots stood empty all that time, and empties once no slot was used. The
   * owner calls it every few seconds. Shrinking as generations leave would reallocate the
   * buffers after every burst and again as the next one arrives; large short-lived buffers
   * (external memory to the JS engine) then force a full garbage collection every few runs.
   */
  trim(): void {
    const need = Math.max(this.peak, this.used)
    this.peak = this.used
    let target = this.allocated
    while (target > this.minSlots && need <= target / 4) target = Math.max(this.minSlots, target / 2)
    if (need === 0 && this.minSlots <= 1) target = 0
    if (target !== this.allocated) this.resize(target)
  }

  /** Layer `layer`'s keys and values for slots [lo, hi), as views of the buffers. */
  view(layer: number, lo: number, hi: number): { keys: Float32Array; values: Float32Array } {
    const f = this.slotFloats
    return {
      keys: (this.keys[layer] as Float32Array).subarray(lo * f, hi * f),
      values: (this.values[layer] as Float32Array).subarray(lo * f, hi * f),
    }
  }

  /**
   * Writes `count` new rows of one layer at the slot's current length. `keys` and `values` hold
   * rows of kvHeads * headDim floats (the graph's [batch, seq, kvHeads * headDim] outputs);
   * the slot's rows start at row `firstRow`. The caller advances the length after every layer.
   */
  write(
    slot: number,
    layer: number,
    keys: Float32Array,
    values: Float32Array,
    firstRow: number,
    count: number,
  ): void {
    const { heads, headDim: d, capacity } = this
    const width = heads * d
    const at = this.lengths[slot] as number
    const base = slot * this.slotFloats
    const k = this.keys[layer] as Float32Array
    const v = this.values[layer] as Float32Array
    for (let s = 0; s < count; s++) {
      const row = (firstRow + s) * width
      for (let h = 0; h < heads; h++) {
        const to = base + (h * capacity + at + s) * d
        k.set(keys.subarray(row + h * d, row + (h + 1) * d), to)
        v.set(values.subarray(row + h * d, row + (h + 1) * d), to)
      }
    }
  }

  /**
   * Exchanges two occupied slots: their owners, lengths and the positions either holds, in every
   * layer. Rows past a slot's length are never read as past, so only the longer length is copied.
   */
  swap(a: number, b: number): void {
    if (a === b) return
    const { heads, headDim: d, capacity } = this
    const n = Math.max(this.lengths[a] as number, this.lengths[b] as number) * d
    if (this.scratch.length < n) this.scratch = new Float32Array(capacity * d)
    const tmp = this.scratch
    const f = this.slotFloats
    for (const buf of [...this.keys, ...this.values]) {
      for (let h = 0; h < heads; h++) {
        const at = a * f + h * capacity * d
        const bt = b * f + h * capacity * d
        tmp.set(buf.subarray(at, at + n))
        buf.copyWithin(at, bt, bt + n)
        buf.set(tmp.subarray(0, n), bt)
      }
    }
    const owner = this.owners[a] as string
    this.owners[a] = this.owners[b] as string
    this.owners[b] = owner
    const length = this.lengths[a] as number
    this.lengths[a] = this.lengths[b] as number
    this.lengths[b] = length
  }

  /** Copies the first `length` positions of another pool's slot into `slot` (a tier change). */
  copyFrom(from: KvPool, fromSlot: number, slot: number, length: number): void {
    const { heads, headDim: d } = this
    for (let l = 0; l < this.layers; l++) {
      const pairs: Array<[Float32Array, Float32Array]> = [
        [from.keys[l] as Float32Array, this.keys[l] as Float32Array],
        [from.values[l] as Float32Array, this.values[l] as Float32Array],
      ]
      for (const [src, dst] of pairs) {
        for (let h = 0; h < heads; h++) {
          const s = fromSlot * from.slotFloats + h * from.capacity * d
          dst.set(src.subarray(s, s + length * d), slot * this.slotFloats + h * this.capacity * d)
        }
      }
    }
    this.lengths[slot] = length
  }

  private resize(slots: number): void {
    const keep = Math.min(this.used, slots) * this.slotFloats
    const grow = (old: Float32Array | undefined): Float32Array => {
      const data = new Float32Array(slots * this.slotFloats)
      if (old !== undefined && keep > 0) data.set(old.subarray(0, keep))
      return data
    }
    this.keys = Array.from({ length: this.layers }, (_, l) => grow(this.keys[l]))
    this.values = Array.from({ length: this.layers }, (_, l) => grow(this.values[l]))
    this.allocated = slots
  }
}
