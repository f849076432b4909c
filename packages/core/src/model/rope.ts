import type { LayerAttention } from './architecture.js'
import { type ModelConfig, rotaryDimOf } from './model-config.js'
import type { RopeScaling } from './rope-scaling.js'

/**
 * RoPE base and scaling of one kind of layer. Gemma 3's sliding layers rotate with their own
 * base (rope_local_base_freq) and, as transformers builds them, no scaling; without a local base
 * (Mistral, Phi-3) sliding layers rotate exactly like full ones.
 */
function ropeParams(config: ModelConfig, kind: LayerAttention): { theta: number; scaling?: RopeScaling } {
  if (kind === 'sliding' && config.localRopeTheta !== undefined) return { theta: config.localRopeTheta }
  return config.ropeScaling === undefined
    ? { theta: config.ropeTheta }
    : { theta: config.ropeTheta, scaling: config.ropeScaling }
}

/**
 * Inverse frequencies of the `rotaryDimOf(config) / 2` rotating pairs, in float64, as
 * transformers' modeling_rope_utils.py computes them for each rope_type.
 */
export function ropeInverseFrequencies(config: ModelConfig, kind: LayerAttention = 'full'): Float64Array {
  const dim = rotaryDimOf(config)
  const half = dim / 2
  const { theta, scaling } = ropeParams(config, kind)
  const base = new Float64Array(half)
  for (let i = 0; i < half; i++) base[i] = 1 / theta ** ((2 * i) / dim)
  if (scaling === undefined) return base
  switch (scaling.type) {
    case 'linear':
      return base.map((f) => f / scaling.factor)
    case 'frequency_factors':
      return base.map((f, i) => f / (scaling.factors[i] as number))
    case 'longrope': {
      // HF switches per sequence; we choose once by the context this config serves.
      const factors = config.maxContext > scaling.originalContext ? scaling.longFactor : scaling.shortFactor
      return base.map((f, i) => f / (factors[i] as number))
    }
    case 'llama3': {
      const { factor, lowFreqFactor: low, highFreqFactor: high, originalContext: ctx } = scaling
      const lowFreqWavelen = ctx / low
      const highFreqWavelen = ctx / high
      return base.map((f) => {
        const wavelen = (2 * Math.PI) / f
        if (wavelen < highFreqWavelen) return f
        if (wavelen > lowFreqWavelen) return f / factor
        const smooth = (ctx / wavelen - low) / (high - low)
        return ((1 - smooth) * f) / factor + smooth * f
      })
    }
    case 'yarn': {
      const { factor, originalContext: ctx, betaFast, betaSlow, truncate } = scaling
      const correctionDim = (rotations: number) =>
        (dim * Math.log(ctx / (rotations * 2 * Math.PI))) / (2 * Math.log(theta))
      let lo = correctionDim(betaFast)
      let hi = correctionDim(betaSlow)
      if (truncate) {
        lo = Math.floor(lo)
        hi = Math.ceil(hi)
      }
      lo = Math.max(lo, 0)
      hi = Math.min(hi, dim - 1)
      if (lo === hi) hi += 0.001 // HF's guard against a zero-width ramp
      return base.map((f, i) => {
        const ramp = Math.min(1, Math.max(0, (i - lo) / (hi - lo)))
        const extrapolationFactor = 1 - ramp
        return (f / factor) * (1 - extrapolationFactor) + f * extrapolationFactor
      })
    }
  }
}

/** What cos and sin are multiplied by (YaRN's and LongRoPE's attention factor; 1 otherwise). */
export function ropeAttentionFactor(config: ModelConfig, kind: LayerAttention = 'full'): number {
  const { scaling } = ropeParams(config, kind)
  if (scaling?.type === 'yarn' || scaling?.type === 'longrope') return scaling.attentionFactor
  return 1
}

/**
 * Rotary caches shared by the ONNX graph and the reference forward pass, so both rotate with
 * bit-identical angles. Layout: [maxContext, rotaryDim / 2], non-interleaved ("rotate half", as
 * Hugging Face checkpoints expect), already multiplied by the attention factor.
 */
export function ropeCaches(
  config: ModelConfig,
  kind: LayerAttention = 'full',
): { cos: Float32Array; sin: Float32Array } {
  const invFreq = ropeInverseFrequencies(config, kind)
  const factor = ropeAttentionFactor(config, kind)
  const half = invFreq.length
  const cos = new Float32Array(config.maxContext * half)
  const sin = new Float32Array(config.maxContext * half)
  for (let i = 0; i < half; i++) {
    const f = invFreq[i] as number
    for (let pos = 0; pos < config.maxContext; pos++) {
      const angle = pos * f
      cos[pos * half + i] = Math.cos(angle) * factor
      sin[pos * half + i] = Math.sin(angle) * factor
    }
  }
  return { cos, sin }
}
