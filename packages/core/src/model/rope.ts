import type { ModelConfig } from './model-config.js'

/**
 * Rotary caches shared by the ONNX graph and the reference forward pass, so both rotate
 * with bit-identical angles. Layout: [maxContext, headDim / 2], non-interleaved
 * ("rotate half", as Hugging Face Llama checkpoints expect).
 */
export function ropeCaches(config: ModelConfig): { cos: Float32Array; sin: Float32Array } {
  const half = config.headDim / 2
  const cos = new Float32Array(config.maxContext * half)
  const sin = new Float32Array(config.maxContext * half)
  for (let i = 0; i < half; i++) {
    const invFreq = 1 / config.ropeTheta ** ((2 * i) / config.headDim)
    for (let pos = 0; pos < config.maxContext; pos++) {
      const angle = pos * invFreq
      cos[pos * half + i] = Math.cos(angle)
      sin[pos * half + i] = Math.sin(angle)
    }
  }
  return { cos, sin }
}
