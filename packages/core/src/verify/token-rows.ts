/** Per position of a last-stage step: the top-2 ids and values and the logSumExp (temporary; see h-rows). */
export interface TokenRows {
  readonly seqLen: number
  readonly ids: Int32Array
  readonly values: Float32Array
  readonly logSumExp: Float32Array
}

export function tokenAgrees(rows: TokenRows, position: number, token: number, tieTolerance = 1e-4): boolean {
  if (!(position >= 0 && position < rows.seqLen)) return false
  const id1 = rows.ids[2 * position]
  const v1 = rows.values[2 * position] as number
  if (id1 === token) return true
  const id2 = rows.ids[2 * position + 1]
  const v2 = rows.values[2 * position + 1] as number
  return id2 === token && Math.abs(v1 - v2) <= tieTolerance * Math.max(1, Math.abs(v1))
}
