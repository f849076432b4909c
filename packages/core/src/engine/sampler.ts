import { Xoshiro128ss } from '../base/rng.js'
import type { TopKLogits } from '../base/top-k-logits.js'
import { SamplingError } from '../errors.js'
import { LogitPenalties } from './logit-penalties.js'

export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number
  topK?: number
  topP?: number
  /** Fixes the draws; any safe non-negative integer. */
  seed?: number
  /** OpenAI's penalties in [-2, 2] over the tokens sampled so far (see LogitPenalties). */
  frequencyPenalty?: number
  presencePenalty?: number
  /** OpenAI's logit_bias: token id → bias in [-100, 100], applied within the top-k (see LogitPenalties). */
  logitBias?: Readonly<Record<number, number>>
}

/** What Sampler.checkpoint saves. */
export interface SamplerCheckpoint {
  readonly rng: Uint32Array
  readonly counts: ReadonlyMap<number, number>
}

const MAX_TEMPERATURE = 100
const MAX_PENALTY = 2
const MAX_BIAS = 100
/** How far the top logit may exceed logSumExp (float32 rounding in the producer) before we object. */
const LSE_SLACK = 0.05

export function validateSamplingParams(p: SamplingParams): SamplingParams {
  if (typeof p !== 'object' || p === null) throw new SamplingError('sampling params must be an object')
  const { temperature, topK, topP, seed } = p
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw new SamplingError(`temperature must be a finite number >= 0, got ${String(temperature)}`)
  }
  if (temperature > MAX_TEMPERATURE) {
    throw new SamplingError(`temperature must be at most ${MAX_TEMPERATURE}, got ${temperature}`)
  }
  if (topK !== undefined && !(Number.isSafeInteger(topK) && topK > 0)) {
    throw new SamplingError(`topK must be a positive integer, got ${String(topK)}`)
  }
  if (topP !== undefined && !(typeof topP === 'number' && topP > 0 && topP <= 1)) {
    throw new SamplingError(`topP must be in (0, 1], got ${String(topP)}`)
  }
  if (seed !== undefined && !(Number.isSafeInteger(seed) && seed >= 0)) {
    throw new SamplingError(`seed must be a safe non-negative integer, got ${String(seed)}`)
  }
  for (const key of ['frequencyPenalty', 'presencePenalty'] as const) {
    const v = p[key]
    if (v !== undefined && !(typeof v === 'number' && Math.abs(v) <= MAX_PENALTY)) {
      throw new SamplingError(`${key} must be in [-${MAX_PENALTY}, ${MAX_PENALTY}], got ${String(v)}`)
    }
  }
  if (p.logitBias !== undefined) {
    if (typeof p.logitBias !== 'object' || p.logitBias === null) {
      throw new SamplingError('logitBias must be an object of token id to bias')
    }
    for (const [id, b] of Object.entries(p.logitBias)) {
      if (!/^\d{1,9}$/.test(id) || !(typeof b === 'number' && Math.abs(b) <= MAX_BIAS)) {
        throw new SamplingError(
          `logitBias maps token ids to biases in [-${MAX_BIAS}, ${MAX_BIAS}], got ${id}: ${String(b)}`,
        )
      }
    }
  }
  return p
}

/** The temperature the producer must divide by for logSumExp: greedy decoding uses 1. */
export function logitTemperature(p: SamplingParams): number {
  return p.temperature === 0 ? 1 : p.temperature
}

/**
 * Draws tokens from top-k logits: greedy, or temperature with optional top-k then top-p.
 * Because logSumExp covers the whole vocabulary, each candidate's probability is exact, so
 * top-p (judged on full-vocabulary probabilities) is exact too whenever the nucleus fits in the
 * candidates. When it does not, we sample among the candidates we have and record the shortfall.
 */
export class Sampler {
  readonly params: SamplingParams
  /** The seed in use (drawn at random when params.seed is absent), so a run can be replayed. */
  readonly seed: number
  /**
   * After each `sample`: probability mass the requested filter wanted but the candidates did
   * not cover (for a requested top-k larger than the candidate list, an upper bound); 0 when
   * the draw was exact.
   */
  truncatedMass = 0
  private readonly rng: Xoshiro128ss
  private readonly penalties: LogitPenalties

  constructor(params: SamplingParams) {
    this.params = validateSamplingParams({ ...params })
    this.seed = this.params.seed ?? Math.floor(Math.random() * 2 ** 53)
    this.rng = new Xoshiro128ss(this.seed)
    this.penalties = new LogitPenalties(
      this.params.frequencyPenalty ?? 0,
      this.params.presencePenalty ?? 0,
      this.params.logitBias,
    )
  }

  /**
   * Everything a draw changes (the generator state and the penalty counts): a generation that
   * rolls back unconfirmed tokens restores the checkpoint taken before the first of them, so
   * the redrawn tokens are the ones an uninterrupted run with the same seed would draw.
   */
  checkpoint(): SamplerCheckpoint {
    return { rng: this.rng.saveState(), counts: this.penalties.saveCounts() }
  }

  restore(cp: SamplerCheckpoint): void {
    this.rng.restoreState(cp.rng)
    this.penalties.restoreCounts(cp.counts)
  }

  /**
   * Draws the next token and counts it for the penalties. `lseTemperature` is the temperature
   * the producer's logSumExp was taken at (default: `logitTemperature(params)`). When it is not
   * the sampling temperature (the stage ran at 1 so that its logSumExp gives the model's
   * log-probabilities), the logSumExp is rebuilt over the candidates alone, so the draw is the
   * candidates' distribution renormalised: top-p is then judged on the top-k, not the vocabulary.
   */
  sample(raw: TopKLogits, lseTemperature = logitTemperature(this.params)): number {
    checkTopK(raw)
    const t = logitTemperature(this.params)
    const rescaled =
      lseTemperature === t || this.params.temperature === 0
        ? raw
        : { ...raw, logSumExp: candidatesLogSumExp(raw.values, t) }
    const token = this.draw(this.penalties.apply(rescaled, this.params.temperature))
    this.penalties.observe(token)
    return token
  }

  private draw(logits: TopKLogits): number {
    const { values, ids, logSumExp } = logits
    const n = values.length
    this.truncatedMass = 0
    const { temperature, topK, topP } = this.params
    if (temperature === 0) return ids[0] as number
    if (!Number.isFinite(logSumExp)) throw new SamplingError(`logSumExp must be finite, got ${logSumExp}`)
    const top = (values[0] as number) / temperature - logSumExp
    if (!(top <= LSE_SLACK + 1e-6 * Math.abs(logSumExp))) {
      throw new SamplingError(`logSumExp ${logSumExp} is below the top logit / T; wrong temperature?`)
    }

    const limit = topK === undefined ? n : Math.min(topK, n)
    const probs = new Float64Array(limit)
    let mass = 0
    let kept = 0
    while (kept < limit) {
      const p = Math.min(1, Math.exp((values[kept] as number) / temperature - logSumExp))
      probs[kept++] = p
      mass += p
      if (topP !== undefined && mass >= topP) break
    }
    // The filter stopped only because the candidate list ran out, not because it was satisfied.
    if (kept === n && (topK === undefined || topK > n)) {
      this.truncatedMass = Math.max(0, (topP ?? 1) - Math.min(1, mass))
    }
    if (!(mass > 0 && Number.isFinite(mass))) {
      throw new SamplingError('candidate probabilities underflow: logSumExp does not match the values')
    }

    const r = this.rng.nextFloat64() * mass
    let acc = 0
    for (let i = 0; i < kept; i++) {
      acc += probs[i] as number
      if (r < acc) return ids[i] as number
    }
    // Only reachable when r * mass rounds up to mass: take the last candidate that has mass.
    let last = kept - 1
    while (last > 0 && (probs[last] as number) === 0) last--
    return ids[last] as number
  }
}

/** log Σ exp(v / t) over the candidates only. */
function candidatesLogSumExp(values: Float32Array, t: number): number {
  const shift = (values[0] as number) / t
  let sum = 0
  for (const v of values) sum += Math.exp(v / t - shift)
  return shift + Math.log(sum)
}

/** Checks the producer's output; returns the candidate count. */
function checkTopK(logits: TopKLogits): number {
  const { values, ids } = logits
  if (!(values instanceof Float32Array) || !(ids instanceof Int32Array)) {
    throw new SamplingError('top-k logits need Float32Array values and Int32Array ids')
  }
  const n = values.length
  if (n === 0 || ids.length !== n) {
    throw new SamplingError(
      `top-k logits need matching non-empty values and ids (got ${n} and ${ids.length})`,
    )
  }
  for (let i = 0; i < n; i++) {
    const v = values[i] as number
    if (Number.isNaN(v) || v === Number.POSITIVE_INFINITY) throw new SamplingError(`top-k value ${i} is ${v}`)
    if (i > 0 && v > (values[i - 1] as number))
      throw new SamplingError('top-k values are not sorted descending')
    if ((ids[i] as number) < 0) throw new SamplingError(`top-k id ${ids[i]} is negative`)
  }
  return n
}

/**
 * Reference top-k: the k largest logits, stable (equal values keep the lower id first), with
 * logSumExp over all logits at `temperature` (0 means greedy, which uses 1).
 */
export function topKFromLogits(logits: Float32Array, k: number, temperature: number): TopKLogits {
  if (!(logits instanceof Float32Array) || logits.length === 0) {
    throw new SamplingError('logits must be a non-empty Float32Array')
  }
  if (!(Number.isSafeInteger(k) && k > 0)) throw new SamplingError(`k must be a positive integer, got ${k}`)
  if (!(Number.isFinite(temperature) && temperature >= 0)) {
    throw new SamplingError(`temperature must be a finite number >= 0, got ${temperature}`)
  }
  const kk = Math.min(k, logits.length)
  const values = new Float32Array(kk)
  const ids = new Int32Array(kk)
  let count = 0
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i] as number
    if (Number.isNaN(v) || v === Number.POSITIVE_INFINITY) throw new SamplingError(`logit ${i} is ${v}`)
    if (count === kk && !(v > (values[kk - 1] as number))) continue
    // Strict comparison: an equal earlier (lower-id) value stays ahead.
    let j = count < kk ? count++ : kk - 1
    while (j > 0 && (values[j - 1] as number) < v) {
      values[j] = values[j - 1] as number
      ids[j] = ids[j - 1] as number
      j--
    }
    values[j] = v
    ids[j] = i
  }
  const max = values[0] as number
  if (max === Number.NEGATIVE_INFINITY) throw new SamplingError('every logit is -Infinity')
  const t = temperature === 0 ? 1 : temperature
  const shift = max / t
  let sum = 0
  for (let i = 0; i < logits.length; i++) sum += Math.exp((logits[i] as number) / t - shift)
  return { values, ids, logSumExp: shift + Math.log(sum) }
}
