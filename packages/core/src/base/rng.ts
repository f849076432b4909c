import { SamplingError } from '../errors.js'

/**
 * xoshiro128** seeded through splitmix32, in 32-bit integer arithmetic only (Math.imul, shifts),
 * so every JS engine produces the same stream. Distinct seeds give distinct states: the low and
 * high 32 bits of the seed each pass through a bijection into separate state words.
 */
export class Xoshiro128ss {
  private readonly state = new Uint32Array(4)

  constructor(seed: number) {
    if (!(Number.isSafeInteger(seed) && seed >= 0)) {
      throw new SamplingError(`seed must be a safe non-negative integer, got ${seed}`)
    }
    const lo = splitmix32(seed >>> 0)
    const hi = splitmix32(Math.floor(seed / 2 ** 32) ^ 0x6a09e667)
    const s = this.state
    s[0] = lo()
    s[1] = lo()
    s[2] = hi()
    s[3] = hi()
    if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 1 // the one state xoshiro cannot leave
  }

  /** A copy of the four state words: restoring it replays the stream from here. */
  saveState(): Uint32Array {
    return Uint32Array.from(this.state)
  }

  /** Rewinds (or advances) to a state from saveState. */
  restoreState(saved: Uint32Array): void {
    if (!(saved instanceof Uint32Array && saved.length === 4) || saved.every((w) => w === 0)) {
      throw new SamplingError('a saved generator state is four 32-bit words, not all zero')
    }
    this.state.set(saved)
  }

  /** Uniform in [0, 2^32). */
  nextUint32(): number {
    return xoshiro128ssNext(this.state)
  }

  /** Uniform in [0, 1) with 53 random bits. */
  nextFloat64(): number {
    const a = this.nextUint32() >>> 5
    const b = this.nextUint32() >>> 6
    return (a * 67108864 + b) / 9007199254740992
  }
}

/**
 * One xoshiro128** step: advances the four 32-bit state words in place and returns the next output,
 * uniform in [0, 2^32). Callers with their own seeding (the trainer) share the generator through this.
 */
export function xoshiro128ssNext(s: Uint32Array): number {
  const s0 = s[0] as number
  const s1 = s[1] as number
  const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0
  const t = s1 << 9
  const s2 = (s[2] as number) ^ s0
  const s3 = (s[3] as number) ^ s1
  s[1] = s1 ^ s2
  s[0] = s0 ^ s3
  s[2] = s2 ^ t
  s[3] = rotl(s3, 11)
  return result
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k))
}

function splitmix32(seed: number): () => number {
  let state = seed | 0
  return () => {
    state = (state + 0x9e3779b9) | 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad)
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97)
    return (z ^ (z >>> 15)) >>> 0
  }
}
