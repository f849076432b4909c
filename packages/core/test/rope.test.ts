import { describe, expect, it } from 'vitest'
import type { ModelConfig } from '../src/model/model-config.js'
import { ropeAttentionFactor, ropeCaches, ropeInverseFrequencies } from '../src/model/rope.js'

// Known answers computed here from the published formulas (transformers' modeling_rope_utils.py),
// independently of rope.ts's code paths. Relative tolerance 1e-12: both sides are float64.
const TOL = 1e-12

const llama31: ModelConfig = {
  architecture: 'llama',
  hiddenSize: 4096,
  numLayers: 1,
  numHeads: 32,
  numKvHeads: 8,
  headDim: 128,
  intermediateSize: 14336,
  vocabSize: 128256,
  ropeTheta: 500000,
  rmsNormEps: 1e-5,
  tieWordEmbeddings: false,
  maxContext: 16,
  attentionBias: false,
  bosTokenId: undefined,
  eosTokenId: undefined,
  ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 8192 },
}

const plain = (theta: number, dim: number, i: number) => theta ** (-(2 * i) / dim)
const close = (a: number, b: number) => expect(Math.abs(a - b) / Math.abs(b)).toBeLessThan(TOL)

describe('RoPE inverse frequencies', () => {
  it('plain RoPE: theta^(-2i/d)', () => {
    const { ropeScaling: _, ...noScaling } = llama31
    const f = ropeInverseFrequencies(noScaling)
    expect(f.length).toBe(64)
    for (const i of [0, 1, 17, 63]) close(f[i] as number, plain(500000, 128, i))
  })

  it('Llama 3.1 (factor 8, low 1, high 4, original 8192): high kept, low / 8, medium smoothed', () => {
    const f = ropeInverseFrequencies(llama31)
    // Wavelengths: high-frequency cut at 8192/4 = 2048, low-frequency cut at 8192/1 = 8192.
    const wavelen = (i: number) => (2 * Math.PI) / plain(500000, 128, i)
    // i = 0: wavelength 2*pi, far below 2048: unchanged.
    expect(wavelen(0)).toBeLessThan(2048)
    close(f[0] as number, 1)
    // i = 63: wavelength ~2.6e6 > 8192: divided by the factor.
    expect(wavelen(63)).toBeGreaterThan(8192)
    close(f[63] as number, plain(500000, 128, 63) / 8)
    // Find a medium dimension and check it against the smooth formula.
    let medium = -1
    for (let i = 0; i < 64; i++) if (wavelen(i) >= 2048 && wavelen(i) <= 8192) medium = i
    expect(medium).toBeGreaterThan(0)
    const inv = plain(500000, 128, medium)
    const smooth = (8192 / wavelen(medium) - 1) / (4 - 1)
    close(f[medium] as number, ((1 - smooth) * inv) / 8 + smooth * inv)
    expect(smooth).toBeGreaterThan(0)
    expect(smooth).toBeLessThan(1)
    expect(ropeAttentionFactor(llama31)).toBe(1)
  })

  it('linear: every frequency divided by the factor', () => {
    const c = { ...llama31, ropeScaling: { type: 'linear', factor: 4 } } as const
    const f = ropeInverseFrequencies(c)
    for (const i of [0, 10, 63]) close(f[i] as number, plain(500000, 128, i) / 4)
  })

  it("yarn with Qwen's factor 4, original 32768 (theta 1e6, head_dim 128)", () => {
    const attentionFactor = 0.1 * Math.log(4) + 1
    const c: ModelConfig = {
      ...llama31,
      architecture: 'qwen3',
      ropeTheta: 1e6,
      ropeScaling: {
        type: 'yarn',
        factor: 4,
        originalContext: 32768,
        betaFast: 32,
        betaSlow: 1,
        attentionFactor,
        truncate: true,
      },
    }
    const f = ropeInverseFrequencies(c)
    // find_correction_dim(r) = d ln(L / (2 pi r)) / (2 ln base), floored / ceiled.
    const corr = (r: number) => (128 * Math.log(32768 / (r * 2 * Math.PI))) / (2 * Math.log(1e6))
    const low = Math.floor(corr(32))
    const high = Math.ceil(corr(1))
    expect([low, high]).toEqual([23, 40]) // by hand: 23.6 -> 23, 39.6 -> 40
    for (let i = 0; i < 64; i++) {
      const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)))
      const ext = plain(1e6, 128, i)
      const want = (ext / 4) * ramp + ext * (1 - ramp)
      close(f[i] as number, want)
    }
    close(f[0] as number, 1) // extrapolated
    close(f[63] as number, plain(1e6, 128, 63) / 4) // interpolated
    // cos/sin carry the attention factor.
    const { cos, sin } = ropeCaches({ ...c, maxContext: 4 })
    close(cos[0] as number, Math.fround(attentionFactor))
    close(sin[64 + 3] as number, Math.fround(Math.sin(f[3] as number) * attentionFactor))
  })

  it('longrope: short factors within the original context, long beyond; attention factor on cos/sin', () => {
    const short = Array.from({ length: 4 }, (_, i) => 1 + i / 10)
    const long = Array.from({ length: 4 }, (_, i) => 2 + i)
    const c: ModelConfig = {
      ...llama31,
      architecture: 'phi3',
      headDim: 12,
      rotaryDim: 8, // partial rotary: 4 frequencies over the first 8 dims
      ropeTheta: 10000,
      ropeScaling: {
        type: 'longrope',
        shortFactor: short,
        longFactor: long,
        originalContext: 8,
        attentionFactor: 1.2,
      },
    }
    const within = ropeInverseFrequencies({ ...c, maxContext: 8 })
    const beyond = ropeInverseFrequencies({ ...c, maxContext: 16 })
    expect(within.length).toBe(4)
    for (let i = 0; i < 4; i++) {
      close(within[i] as number, plain(10000, 8, i) / (short[i] as number))
      close(beyond[i] as number, plain(10000, 8, i) / (long[i] as number))
    }
    const { cos } = ropeCaches({ ...c, maxContext: 2 })
    expect(cos.length).toBe(2 * 4)
    close(cos[4 + 1] as number, Math.fround(Math.cos(within[1] as number) * 1.2))
  })

  it("frequency_factors (llama.cpp's rope_freqs): divided element-wise", () => {
    const factors = Array.from({ length: 64 }, (_, i) => 1 + i)
    const f = ropeInverseFrequencies({ ...llama31, ropeScaling: { type: 'frequency_factors', factors } })
    for (const i of [0, 5, 63]) close(f[i] as number, plain(500000, 128, i) / (i + 1))
  })

  it('Gemma 3: sliding layers use the local base without scaling, full layers the scaled global one', () => {
    const c: ModelConfig = {
      ...llama31,
      architecture: 'gemma3',
      headDim: 256,
      ropeTheta: 1e6,
      localRopeTheta: 10000,
      slidingWindow: 4,
      ropeScaling: { type: 'linear', factor: 8 },
    }
    const local = ropeInverseFrequencies(c, 'sliding')
    const global = ropeInverseFrequencies(c, 'full')
    for (const i of [1, 100]) {
      close(local[i] as number, plain(10000, 256, i))
      close(global[i] as number, plain(1e6, 256, i) / 8)
    }
    // Without a local base (Mistral, Phi-3), sliding layers rotate like full ones.
    const { localRopeTheta: _, ...mistralLike } = c
    expect(ropeInverseFrequencies(mistralLike, 'sliding')).toEqual(
      ropeInverseFrequencies(mistralLike, 'full'),
    )
  })
})
