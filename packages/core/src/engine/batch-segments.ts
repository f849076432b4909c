/** A run of consecutive slots [lo, hi) of one pool, and the rows in it. */
export interface Segment<R> {
  readonly lo: number
  readonly hi: number
  readonly rows: readonly R[]
}

/**
 * Cuts rows (sorted by slot) into runs of consecutive slots. A gap of up to `maxGap` idle slots
 * is run as padding rather than paying for a second run; so is a wider one while the padding of
 * the merged run stays no larger than the rows it carries. Why: a decode run's cost is mostly
 * fixed (the runtime call, reading every weight once), and a padding row at position 0 adds only
 * one row of matrix products, so one run at most twice as wide beats two. It matters because
 * generations that run together need not hold neighbouring slots: a pipeline keeps two halves of
 * its generations on alternate stages, and their slots interleave (a slot is taken on arrival).
 * A segment never spans more than `maxBatch` slots. With `padSingle`, a segment of one slot
 * grows by a neighbouring (padding) slot, so no run computes a single row (a pool keeps at least
 * two slots then).
 */
export function segments<R extends { readonly row: { readonly slot: number } }>(
  rows: readonly R[],
  opts: {
    readonly maxBatch: number
    readonly maxGap: number
    readonly padSingle: boolean
    readonly slots: number
  },
): Array<Segment<R>> {
  const out: Array<Segment<R>> = []
  let current: { lo: number; hi: number; rows: R[] } | undefined
  for (const r of rows) {
    const slot = r.row.slot
    if (current !== undefined && slot - current.hi <= opts.maxGap && slot + 1 - current.lo <= opts.maxBatch) {
      current.hi = slot + 1
      current.rows.push(r)
      continue
    }
    if (current !== undefined) out.push(current)
    current = { lo: slot, hi: slot + 1, rows: [r] }
  }
  if (current !== undefined) out.push(current)
  const merged = mergeSparse(out, opts.maxBatch)
  if (!opts.padSingle || opts.maxBatch < 2) return merged
  return merged.map((s) => {
    if (s.hi - s.lo > 1) return s
    return s.hi < opts.slots ? { ...s, hi: s.hi + 1 } : { ...s, lo: s.lo - 1 }
  })
}

/** Joins neighbouring segments, left to right, while the joined one has no more padding than rows. */
function mergeSparse<R>(parts: ReadonlyArray<Segment<R>>, maxBatch: number): Array<Segment<R>> {
  const out: Array<Segment<R>> = []
  let current: { lo: number; hi: number; rows: R[] } | undefined
  for (const part of parts) {
    if (current !== undefined) {
      const rows = current.rows.length + part.rows.length
      const span = part.hi - current.lo
      if (span <= maxBatch && span - rows <= rows) {
        current.hi = part.hi
        current.rows.push(...part.rows)
        continue
      }
      out.push(current)
    }
    current = { lo: part.lo, hi: part.hi, rows: [...part.rows] }
  }
  if (current !== undefined) out.push(current)
  return out
}
