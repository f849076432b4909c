/**
 * RoPE frequency scaling as config.json spells it (`rope_scaling`, or `rope_parameters` in newer
 * transformers releases). Parsing resolves every default here, so the frequency tables in rope.ts
 * read plain numbers. Unknown types are refused by name: rotating with the wrong frequencies does
 * not fail, it just produces a model that talks nonsense.
 */
export type RopeScaling =
  /** Positions divided by `factor` (Code Llama, long-context fine-tunes). */
  | { readonly type: 'linear'; readonly factor: number }
  /** Llama 3.1+: low frequencies divided by `factor`, high kept, a smooth ramp between. */
  | {
      readonly type: 'llama3'
      readonly factor: number
      readonly lowFreqFactor: number
      readonly highFreqFactor: number
      readonly originalContext: number
    }
  /** YaRN (Qwen long context): NTK-by-parts interpolation plus an attention temperature. */
  | {
      readonly type: 'yarn'
      readonly factor: number
      readonly originalContext: number
      readonly betaFast: number
      readonly betaSlow: number
      /** Multiplies cos and sin (HF `attention_factor`, resolved from mscale when absent). */
      readonly attentionFactor: number
      /** Round the correction range to whole dimensions (HF default true). */
      readonly truncate: boolean
    }
  /**
   * Per-dimension divisors of the inverse frequencies, as llama.cpp's `rope_freqs.weight` stores
   * them (its converter bakes Llama 3 scaling into this table). How a GGUF import carries it; the
   * config.json spelling (`rope_type: "frequency_factors"`) is ours.
   */
  | { readonly type: 'frequency_factors'; readonly factors: readonly number[] }
  /**
   * Phi-3 LongRoPE: per-dimension divisors. HF switches from short to long factors once a
   * sequence passes `originalContext`; we choose once, by the context served (see rope.ts).
   */
  | {
      readonly type: 'longrope'
      readonly shortFactor: readonly number[]
      readonly longFactor: readonly number[]
      readonly originalContext: number
      readonly attentionFactor: number
    }

export const ROPE_SCALING_TYPES = ['linear', 'llama3', 'yarn', 'longrope', 'frequency_factors'] as const

type Fail = (field: string, msg: string) => Error

/**
 * Reads `rope_scaling` (or the scaling part of `rope_parameters`); undefined for plain RoPE.
 * `maxPositions` is max_position_embeddings, the default original context for YaRN and the
 * LongRoPE factor; `rotaryDim` sizes LongRoPE's factor lists.
 */
export function parseRopeScaling(
  value: unknown,
  field: string,
  maxPositions: number,
  rotaryDim: number,
  fail: Fail,
): RopeScaling | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fail(field, `must be an object or null, got ${describe(value)}`)
  }
  const p = value as Record<string, unknown>
  const type = p.rope_type ?? p.type
  const num = (key: string, fallback?: number, positive = true): number => {
    const v = p[key] ?? fallback
    if (typeof v !== 'number' || !Number.isFinite(v) || (positive && !(v > 0))) {
      throw fail(field, `${key} must be a ${positive ? 'positive ' : ''}number, got ${describe(p[key])}`)
    }
    return v
  }
  const context = (fallback?: number): number => {
    const v = num('original_max_position_embeddings', fallback)
    if (!Number.isSafeInteger(v)) throw fail(field, `original_max_position_embeddings must be an integer`)
    return v
  }
  switch (type) {
    case undefined:
    case 'default':
      return undefined
    case 'linear':
      return { type: 'linear', factor: num('factor') }
    case 'llama3': {
      const s = {
        type: 'llama3',
        factor: num('factor'),
        lowFreqFactor: num('low_freq_factor'),
        highFreqFactor: num('high_freq_factor'),
        originalContext: context(),
      } as const
      if (!(s.highFreqFactor > s.lowFreqFactor)) {
        throw fail(
          field,
          `high_freq_factor (${s.highFreqFactor}) must exceed low_freq_factor (${s.lowFreqFactor})`,
        )
      }
      return s
    }
    case 'yarn': {
      const factor = num('factor')
      const mscale = (scale: number, m: number) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1)
      let attentionFactor: number
      if (p.attention_factor !== undefined && p.attention_factor !== null)
        attentionFactor = num('attention_factor')
      else if (p.mscale !== undefined && p.mscale_all_dim !== undefined) {
        attentionFactor = mscale(factor, num('mscale')) / mscale(factor, num('mscale_all_dim'))
      } else attentionFactor = mscale(factor, 1)
      const truncate = p.truncate ?? true
      if (typeof truncate !== 'boolean')
        throw fail(field, `truncate must be a boolean, got ${describe(truncate)}`)
      return {
        type: 'yarn',
        factor,
        originalContext: context(maxPositions),
        betaFast: num('beta_fast', 32),
        betaSlow: num('beta_slow', 1),
        attentionFactor,
        truncate,
      }
    }
    case 'longrope': {
      const originalContext = context(
        typeof p.original_max_position_embeddings === 'number' ? undefined : maxPositions,
      )
      const factors = (key: string): number[] => {
        const v = p[key]
        if (
          !Array.isArray(v) ||
          v.length !== rotaryDim / 2 ||
          v.some((x) => typeof x !== 'number' || !(x > 0))
        ) {
          throw fail(field, `${key} must be ${rotaryDim / 2} positive numbers (rotary dim / 2)`)
        }
        return v as number[]
      }
      const scale = maxPositions / originalContext
      const attentionFactor =
        p.attention_factor !== undefined && p.attention_factor !== null
          ? num('attention_factor')
          : scale <= 1
            ? 1
            : Math.sqrt(1 + Math.log(scale) / Math.log(originalContext))
      return {
        type: 'longrope',
        shortFactor: factors('short_factor'),
        longFactor: factors('long_factor'),
        originalContext,
        attentionFactor,
      }
    }
    default:
      throw fail(
        field,
        `rope type ${describe(type)} is unsupported (supported: default, ${ROPE_SCALING_TYPES.join(', ')})`,
      )
  }
}

/** config.json spelling of a scaling, for modelConfigToJson. */
export function ropeScalingToJson(s: RopeScaling): Record<string, unknown> {
  switch (s.type) {
    case 'linear':
      return { rope_type: 'linear', factor: s.factor }
    case 'llama3':
      return {
        rope_type: 'llama3',
        factor: s.factor,
        low_freq_factor: s.lowFreqFactor,
        high_freq_factor: s.highFreqFactor,
        original_max_position_embeddings: s.originalContext,
      }
    case 'yarn':
      return {
        rope_type: 'yarn',
        factor: s.factor,
        original_max_position_embeddings: s.originalContext,
        beta_fast: s.betaFast,
        beta_slow: s.betaSlow,
        attention_factor: s.attentionFactor,
        truncate: s.truncate,
      }
    case 'frequency_factors':
      return { rope_type: 'frequency_factors', factors: [...s.factors] }
    case 'longrope':
      return {
        rope_type: 'longrope',
        short_factor: [...s.shortFactor],
        long_factor: [...s.longFactor],
        original_max_position_embeddings: s.originalContext,
        attention_factor: s.attentionFactor,
      }
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing'
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
