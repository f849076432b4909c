import { WireProtocolError } from '../errors.js'
import { fromFloat32, toFloat32 } from '../weights/float16.js'

/**
 * How hidden states travel between stages. fp32 is the default and the only encoding older
 * peers know; a mesh that opts into fp16 halves the bytes of every hidden state it sends.
 *
 * In memory a hidden state is always a Float32Array. An fp16 one holds only values that fp16
 * represents exactly, so encoding it is lossless and a signature or fingerprint over the values
 * covers exactly what travels. Senders round with roundToFp16 first; validation refuses the rest.
 */
export type HiddenDtype = 'fp32' | 'fp16'

/**
 * Body tags (u32) of the dtypes that need one. fp32 has none: its bodies are what they always
 * were, so one message never has two encodings.
 */
const TAGS: Readonly<Record<number, HiddenDtype>> = { 1: 'fp16' }
export const FP16_TAG = 1

export function hiddenDtypeOfTag(tag: number): HiddenDtype {
  const dtype = TAGS[tag]
  if (dtype === undefined) throw dtypeError(`unknown hidden dtype tag ${tag}`)
  return dtype
}

/** The field's dtype (undefined means fp32), or ERR_WIRE_DTYPE. */
export function checkHiddenDtype(value: unknown, field: string): HiddenDtype | undefined {
  if (value === undefined || value === 'fp32' || value === 'fp16') return value
  throw dtypeError(`${field} must be fp32 or fp16, got ${JSON.stringify(String(value)).slice(0, 40)}`)
}

/** ERR_WIRE_DTYPE unless every value is an fp16 value (the caller checked they are finite). */
export function checkFp16Values(values: Float32Array, field: string): void {
  const i = firstInexact(values)
  if (i >= 0) {
    throw dtypeError(`${field}[${i}] = ${values[i]} is not an fp16 value (round it with roundToFp16)`)
  }
}

/** fp16's largest finite value. */
export const FP16_MAX = 65504

/**
 * `values` itself when they are all fp16 values already (a hop that came in as fp16), else a
 * rounded copy, ties to even. Finite values beyond fp16's range saturate at ±FP16_MAX rather than
 * become infinities no peer would accept: a model with activations that large belongs on fp32.
 */
export function roundToFp16(values: Float32Array): Float32Array {
  if (firstInexact(values) < 0) return values
  const out = fp16ToValues(valuesToFp16(values), values.length)
  for (let i = 0; i < out.length; i++) {
    const v = out[i] as number
    if (!Number.isFinite(v) && Number.isFinite(values[i] as number)) out[i] = v > 0 ? FP16_MAX : -FP16_MAX
  }
  return out
}

/**
 * A StepRequest's hidden input and dtype fields: with fp16 the input is rounded (a no-op for one
 * that arrived as fp16) and the request asks for an fp16 answer, even when it carries tokens.
 */
export function hiddenFields(
  hidden: Float32Array | undefined,
  dtype: HiddenDtype | undefined,
): { hidden?: Float32Array; hiddenDtype?: 'fp16' } {
  if (dtype !== 'fp16') return hidden !== undefined ? { hidden } : {}
  return { ...(hidden !== undefined ? { hidden: roundToFp16(hidden) } : {}), hiddenDtype: 'fp16' }
}

/** Little-endian fp16 bytes, ties to even. */
export function valuesToFp16(values: Float32Array): Uint8Array {
  return fromFloat32(values, 'F16')
}

/** `count` little-endian fp16 values from `bytes` (exactly 2 * count bytes), widened exactly. */
export function fp16ToValues(bytes: Uint8Array, count: number): Float32Array {
  return toFloat32({ dtype: 'F16', shape: [count], data: bytes })
}

const scratch = new Float32Array(1)
const scratchBits = new Uint32Array(scratch.buffer)

/**
 * Index of the first value fp16 cannot hold exactly, or -1. A normal fp16 keeps 10 mantissa bits,
 * so the low 13 of the float32 mantissa are zero; subnormals and out-of-range values go the slow
 * way through a real round trip.
 */
function firstInexact(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) {
    scratch[0] = values[i] as number
    const bits = scratchBits[0] as number
    const exp = (bits >>> 23) & 0xff
    if (exp >= 113 && exp <= 142) {
      if ((bits & 0x1fff) !== 0) return i
    } else if (exp !== 0 || (bits & 0x7fffff) !== 0) {
      const one = values.subarray(i, i + 1)
      if (fp16ToValues(valuesToFp16(one), 1)[0] !== one[0]) return i
    }
  }
  return -1
}

function dtypeError(message: string): WireProtocolError {
  return new WireProtocolError('ERR_WIRE_DTYPE', message)
}
