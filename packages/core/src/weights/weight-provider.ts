import type { RawTensor } from './tensor.js'

/** Fetches one named tensor; a peer only ever asks for its own layers. */
export interface WeightProvider {
  (name: string, shape: readonly number[]): Promise<RawTensor>
  /**
   * Names the tensors this provider returns: two providers with one fingerprint return the same
   * bytes for every name. A cache of built stages (StageCache) keys on it; without one a stage
   * is always built from the tensors.
   */
  readonly fingerprint?: string
}

/** `weights` with a fingerprint attached (the function is not copied). */
export function fingerprinted(
  weights: (name: string, shape: readonly number[]) => Promise<RawTensor>,
  fingerprint: string,
): WeightProvider {
  return Object.assign(weights, { fingerprint })
}
