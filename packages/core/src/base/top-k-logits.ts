/**
 * What the last pipeline stage returns instead of the full logits: the k largest logits (raw,
 * unscaled, sorted descending; equal values keep the lower id first) and log Σ exp(logit / T)
 * over the whole vocabulary at the temperature T actually used (`logitTemperature`).
 */
export interface TopKLogits {
  values: Float32Array
  ids: Int32Array
  logSumExp: number
}
