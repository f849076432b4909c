import { ModelConfigError } from '../errors.js'
import type { ModelConfig } from './model-config.js'

/** y[r] = bias[r] + sum_c w[r, c] * x[xOff + c], for w stored [rows, cols] (PyTorch Linear layout). */
export function linear(
  w: Float32Array,
  bias: Float32Array | undefined,
  rows: number,
  cols: number,
  x: Float64Array,
  xOff: number,
  y: Float64Array,
  yOff: number,
): void {
  for (let r = 0; r < rows; r++) {
    let acc = 0
    const base = r * cols
    for (let c = 0; c < cols; c++) acc += (w[base + c] as number) * (x[xOff + c] as number)
    y[yOff + r] = acc + (bias === undefined ? 0 : (bias[r] as number))
  }
}

/**
 * RMSNorm of x[off, off + n) into out[outOff, ...): x * rsqrt(mean(x^2) + eps) * (offset + w).
 * Gemma stores its norm weights as offsets from one (offset 1); everyone else multiplies by w.
 */
export function rmsNorm(
  x: Float64Array,
  off: number,
  n: number,
  w: Float32Array,
  eps: number,
  out: Float64Array,
  offset: number,
  outOff = 0,
): void {
  let sumSq = 0
  for (let i = 0; i < n; i++) sumSq += (x[off + i] as number) ** 2
  const inv = 1 / Math.sqrt(sumSq / n + eps)
  for (let i = 0; i < n; i++) out[outOff + i] = (x[off + i] as number) * inv * (offset + (w[i] as number))
}

const GELU_C = Math.sqrt(2 / Math.PI)

/** The gate activation of the MLP: SiLU (SwiGLU) or transformers' gelu_pytorch_tanh (GeGLU). */
export function gateActivation(kind: 'silu' | 'gelu_tanh', g: number): number {
  if (kind === 'silu') return g / (1 + Math.exp(-g))
  return 0.5 * g * (1 + Math.tanh(GELU_C * (g + 0.044715 * g * g * g)))
}

/** The invariants the reference's loops rely on (the full set lives in validate-model-config.ts). */
export function checkReferenceConfig(c: ModelConfig): void {
  const integers = [
    'hiddenSize',
    'numLayers',
    'numHeads',
    'numKvHeads',
    'headDim',
    'intermediateSize',
    'vocabSize',
    'maxContext',
  ] as const
  for (const key of integers) {
    const value: unknown = c[key]
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      throw new ModelConfigError(`${key} must be a positive integer, got ${String(value)}`)
    }
  }
  if (c.numHeads % c.numKvHeads !== 0) {
    throw new ModelConfigError(`numHeads (${c.numHeads}) must be a multiple of numKvHeads (${c.numKvHeads})`)
  }
  if (c.headDim % 2 !== 0) throw new ModelConfigError(`headDim must be even for RoPE, got ${c.headDim}`)
  if (!(c.ropeTheta > 0) || !(c.rmsNormEps > 0)) {
    throw new ModelConfigError('ropeTheta and rmsNormEps must be positive')
  }
  const r = c.rotaryDim
  if (r !== undefined && !(Number.isSafeInteger(r) && r > 0 && r % 2 === 0 && r <= c.headDim)) {
    throw new ModelConfigError(`rotaryDim must be an even integer in [2, headDim], got ${String(r)}`)
  }
  const w = c.slidingWindow
  if (w !== undefined && !(Number.isSafeInteger(w) && w > 0)) {
    throw new ModelConfigError(`slidingWindow must be a positive integer, got ${String(w)}`)
  }
  if (c.layerTypes !== undefined && c.layerTypes.length !== c.numLayers) {
    throw new ModelConfigError(`layerTypes must list ${c.numLayers} layers, got ${c.layerTypes.length}`)
  }
}
