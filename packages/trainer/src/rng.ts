import { xoshiro128ssNext } from '@butterfly/core'

/**
 * xoshiro128** seeded through splitmix32: 32-bit integer arithmetic only, so the same seed gives
 * the same stream on every platform and Node version (Math.random cannot be seeded). The step is
 * core's; the seeding is the trainer's own, so committed models keep their random stream.
 */
export class Rng {
  private readonly state: Uint32Array

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new RangeError(`seed must be a non-negative integer, got ${seed}`)
    // Fold the high bits in so seeds above 2^32 still differ.
    let x = (seed >>> 0) ^ Math.imul(Math.floor(seed / 2 ** 32), 0x27d4eb2d)
    const next = (): number => {
      x = (x + 0x9e3779b9) | 0
      let z = x
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.state = Uint32Array.of(next(), next(), next(), next())
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    return xoshiro128ssNext(this.state)
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 2 ** 32
  }

  /** Uniform integer in [0, n), n <= 2^32. */
  int(n: number): number {
    return Math.floor(this.next() * n)
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.next() // (0, 1], so the log is finite
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next())
  }
}
