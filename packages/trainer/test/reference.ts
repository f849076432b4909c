import type { ReferenceModel } from '@butterfly/core'

/** Logits at every position from the slow float64 reference pass core's engines are checked against. */
export function referenceLogits(ref: ReferenceModel, ids: readonly number[]): Float32Array[] {
  const h = ref.config.hiddenSize
  const hidden = ref.runLayers(ref.embed(ids), ids.length, 0, 0, ref.config.numLayers, ref.createCache())
  return ids.map((_, s) => ref.logits(hidden.subarray(0, (s + 1) * h), s + 1))
}

/** max |a - b| / max |b| over all positions. */
export function relativeError(ours: Float32Array | Float64Array, refs: Float32Array[]): number {
  let diff = 0
  let scale = 0
  refs.forEach((r, s) => {
    for (let j = 0; j < r.length; j++) {
      diff = Math.max(diff, Math.abs((ours[s * r.length + j] as number) - (r[j] as number)))
      scale = Math.max(scale, Math.abs(r[j] as number))
    }
  })
  return diff / scale
}
