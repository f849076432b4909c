import type { Floats } from './gemm.js'

export interface ScheduleOptions {
  readonly lr: number
  readonly minLr: number
  readonly warmupSteps: number
  readonly steps: number
}

/** Linear warmup to lr over warmupSteps, then cosine decay to minLr at the last step. */
export function learningRate(step: number, o: ScheduleOptions): number {
  if (step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps
  const span = Math.max(1, o.steps - 1 - o.warmupSteps)
  const t = Math.min(1, (step - o.warmupSteps) / span)
  return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * t))
}

/** Scales `grads` in place so its L2 norm is at most maxNorm; returns the norm before clipping. */
export function clipGradNorm(grads: Floats, maxNorm: number): number {
  let sq = 0
  for (let i = 0; i < grads.length; i++) {
    const g = grads[i] as number
    sq += g * g
  }
  const norm = Math.sqrt(sq)
  if (norm > maxNorm) {
    const s = maxNorm / norm
    for (let i = 0; i < grads.length; i++) grads[i] = (grads[i] as number) * s
  }
  return norm
}

export interface AdamWOptions {
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  readonly weightDecay: number
}

/** AdamW (decoupled weight decay, bias-corrected moments) with decay only where `decay` is 1. */
export class AdamW {
  private readonly m: Float32Array
  private readonly v: Float32Array
  private t = 0

  constructor(
    size: number,
    private readonly decay: Uint8Array,
    private readonly o: AdamWOptions,
  ) {
    this.m = new Float32Array(size)
    this.v = new Float32Array(size)
  }

  step(params: Floats, grads: Floats, lr: number): void {
    const { beta1, beta2, eps, weightDecay } = this.o
    this.t++
    const c1 = 1 - beta1 ** this.t
    const c2 = 1 - beta2 ** this.t
    const { m, v, decay } = this
    for (let i = 0; i < params.length; i++) {
      const g = grads[i] as number
      const mi = beta1 * (m[i] as number) + (1 - beta1) * g
      const vi = beta2 * (v[i] as number) + (1 - beta2) * g * g
      m[i] = mi
      v[i] = vi
      let p = params[i] as number
      if (decay[i] === 1) p -= lr * weightDecay * p
      params[i] = p - (lr * (mi / c1)) / (Math.sqrt(vi / c2) + eps)
    }
  }
}
