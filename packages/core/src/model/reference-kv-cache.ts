import { TensorError } from '../errors.js'

/**
 * Keys (after RoPE) and values per layer, in float64. A pipeline stage only fills its own
 * layers, so each layer keeps its own length.
 */
export class ReferenceKvCache {
  readonly numLayers: number
  readonly kvDim: number
  private readonly keys: Float64Array[] = []
  private readonly values: Float64Array[] = []
  private readonly lengths: number[] = []

  constructor(numLayers: number, kvDim: number) {
    this.numLayers = numLayers
    this.kvDim = kvDim
    for (let l = 0; l < numLayers; l++) {
      this.keys.push(new Float64Array(0))
      this.values.push(new Float64Array(0))
      this.lengths.push(0)
    }
  }

  /** Positions cached: the longest layer (for a full model all layers agree). */
  get length(): number {
    return this.lengths.reduce((a, b) => Math.max(a, b), 0)
  }

  layerLength(layer: number): number {
    return this.lengths[layer] ?? 0
  }

  /** Forgets positions >= `length` in every layer (e.g. to re-run from an earlier point). */
  truncate(length: number): void {
    if (!Number.isInteger(length) || length < 0) {
      throw new TensorError('ERR_TENSOR_VALUE', `cache length must be a non-negative integer, got ${length}`)
    }
    for (let l = 0; l < this.numLayers; l++) this.lengths[l] = Math.min(this.layerLength(l), length)
  }

  /** @internal Appends `seqLen` positions to `layer`; returns [keys, values] covering all positions. */
  append(layer: number, k: Float64Array, v: Float64Array, seqLen: number): [Float64Array, Float64Array] {
    const start = this.layerLength(layer)
    const need = (start + seqLen) * this.kvDim
    let keys = this.keys[layer] as Float64Array
    let values = this.values[layer] as Float64Array
    if (keys.length < need) {
      const capacity = Math.max(need, 2 * keys.length)
      const grownK = new Float64Array(capacity)
      const grownV = new Float64Array(capacity)
      grownK.set(keys.subarray(0, start * this.kvDim))
      grownV.set(values.subarray(0, start * this.kvDim))
      keys = grownK
      values = grownV
      this.keys[layer] = keys
      this.values[layer] = values
    }
    keys.set(k.subarray(0, seqLen * this.kvDim), start * this.kvDim)
    values.set(v.subarray(0, seqLen * this.kvDim), start * this.kvDim)
    this.lengths[layer] = start + seqLen
    return [keys, values]
  }
}
