import { expect } from 'vitest'
import { Xoshiro128ss } from '../src/base/rng.js'
import { VerifyError } from '../src/errors.js'
import type { ModelConfig } from '../src/model/model-config.js'
import { type ReferenceKvCache, ReferenceModel } from '../src/model/reference-model.js'
import { syntheticConfig, syntheticWeights } from '../src/model/synthetic.js'
import { EMBED_TOKENS } from '../src/model/weight-names.js'
import { f16BitsToF32, f32ToF16Bits } from '../src/weights/float16.js'

export class Gaussian {
  private readonly rng: Xoshiro128ss
  constructor(seed: number) {
    this.rng = new Xoshiro128ss(seed)
  }
  next(): number {
    const u = 1 - this.rng.nextFloat64()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.rng.nextFloat64())
  }
  uniform(): number {
    return this.rng.nextFloat64()
  }
  u32(): number {
    return this.rng.nextUint32()
  }
  array(n: number): Float32Array {
    const out = new Float32Array(n)
    for (let i = 0; i < n; i++) out[i] = this.next()
    return out
  }
}

/** x plus per-row noise of relative L2 size `rel`, half proportional to |x_i|, half uniform. */
export function noisy(g: Gaussian, x: Float32Array, h: number, rel: number): Float32Array {
  const out = new Float32Array(x.length)
  for (let off = 0; off < x.length; off += h) {
    let norm = 0
    for (let i = off; i < off + h; i++) norm += (x[i] as number) ** 2
    norm = Math.sqrt(norm)
    const rms = norm / Math.sqrt(h)
    const d = new Float64Array(h)
    let dn = 0
    for (let i = 0; i < h; i++) {
      d[i] = g.next() * (0.5 * rms + 0.5 * Math.abs(x[off + i] as number))
      dn += (d[i] as number) ** 2
    }
    const s = dn > 0 ? (rel * norm) / Math.sqrt(dn) : 0
    for (let i = 0; i < h; i++) out[off + i] = (x[off + i] as number) + (d[i] as number) * s
  }
  return out
}

export function roundF16(x: Float32Array): Float32Array {
  return x.map((v) => f16BitsToF32(f32ToF16Bits(v)))
}

export function expectVerifyError(fn: () => unknown, code: string): VerifyError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(VerifyError)
    expect((err as VerifyError).code).toBe(code)
    return err as VerifyError
  }
  throw new Error(`expected VerifyError ${code}, nothing was thrown`)
}

/**
 * One pipeline stage (layers [0, layerEnd) of a synthetic model) as three numeric classes compute
 * it: 'cpu/fp32' (the reference model), 'cpu/fp16w' (weights rounded to fp16) and 'webgpu/fp16'
 * (fp16 weights, residual stream rounded to fp16 after every layer).
 */
export class StageClasses {
  readonly config: ModelConfig
  readonly fp32: ReferenceModel
  readonly fp16w: ReferenceModel
  readonly layerEnd: number

  constructor(preset: string, layerEnd: number) {
    this.config = syntheticConfig(preset)
    const weights = syntheticWeights(this.config, 3)
    const rounded = new Map<string, Float32Array>()
    for (const [name, w] of weights) rounded.set(name, name === EMBED_TOKENS ? w : roundF16(w))
    this.fp32 = new ReferenceModel(this.config, weights)
    this.fp16w = new ReferenceModel(this.config, rounded)
    this.layerEnd = layerEnd
  }

  get hiddenSize(): number {
    return this.config.hiddenSize
  }

  /** A generation on one replica: feed steps in order, get each step's stage output. */
  replica(
    cls: 'cpu/fp32' | 'cpu/fp16w' | 'webgpu/fp16',
    layerEnd = this.layerEnd,
  ): (ids: number[]) => Float32Array {
    const model = cls === 'cpu/fp32' ? this.fp32 : this.fp16w
    const cache: ReferenceKvCache = model.createCache()
    let pos = 0
    return (ids) => {
      // Every replica gets the same input: the previous stage's output, here the fp32 embedding.
      let x = this.fp32.embed(ids)
      if (cls === 'webgpu/fp16') {
        x = roundF16(x)
        for (let l = 0; l < layerEnd; l++) x = roundF16(model.runLayers(x, ids.length, pos, l, l + 1, cache))
      } else {
        x = model.runLayers(x, ids.length, pos, 0, layerEnd, cache)
      }
      pos += ids.length
      return x
    }
  }
}
