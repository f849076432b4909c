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

/**
 * The candidates of every position of a step (StageStepInput.allRows): row r holds the k largest
 * logits of position r, as TopKLogits does for one position.
 */
export interface RowTopK {
  readonly rows: number
  readonly k: number
  /** [rows * k], each row descending (equal values keep the lower id first). */
  readonly values: Float32Array
  /** [rows * k]. */
  readonly ids: Int32Array
  /** [rows]: log Σ exp(logit / T) per position, at the temperature used. */
  readonly logSumExp: Float32Array
}
