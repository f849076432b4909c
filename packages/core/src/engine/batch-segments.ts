/** A run of consecutive slots [lo, hi) of one pool, and the rows in it. */
export interface Segment<R> {
  readonly lo: number
  readonly hi: number
  readonly rows: readonly R[]
}

/**
 * Cuts rows (sorted by slot) into runs of consecutive slots. A gap of up to `maxGap` idle slots
 * is run as padding rather than paying for a second run; a segment never spans more than
 * `maxBatch` slots. With `padSingle`, a segment of one slot grows by a neighbouring (padding)
 * slot, so no run computes a single row (a pool keeps at least two slots then).
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
  if (!opts.padSingle || opts.maxBatch < 2) return out
  return out.map((s) => {
    if (s.hi - s.lo > 1) return s
    return s.hi < opts.slots ? { ...s, hi: s.hi + 1 } : { ...s, lo: s.lo - 1 }
  })
}
