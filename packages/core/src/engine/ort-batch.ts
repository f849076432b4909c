import type { InferenceSession, Tensor } from 'onnxruntime-common'
import { concatFloats as concat } from '../base/concat-floats.js'
import type { RowTopK, TopKLogits } from '../base/top-k-logits.js'
import { GenerationError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import type { StageIo } from '../onnx/stage-io.js'
import type { StageStepInput, StageStepOutput } from './inference-backend.js'
import type { KvPool } from './kv-pool.js'

/**
 * The part of an onnxruntime package (onnxruntime-node or onnxruntime-web) this module
 * uses. Callers pass the module they loaded, so core stays free of environment imports.
 */
export interface OrtRuntime {
  readonly InferenceSession: {
    create(model: Uint8Array, options?: InferenceSession.SessionOptions): Promise<InferenceSession>
  }
  readonly Tensor: new (
    type: 'float32' | 'int64' | 'int32',
    data: Float32Array | BigInt64Array | Int32Array,
    dims: readonly number[],
  ) => Tensor
}

/** One generation's rows in a batched run: `seqLen` new positions after the slot's current length. */
export interface BatchRow {
  readonly slot: number
  /** First stage: the token ids of the new positions. */
  readonly tokens?: ArrayLike<number>
  /** Other stages: [seqLen * hiddenSize]. */
  readonly hidden?: Float32Array
  /** Last stage: the temperature the log-sum-exp is computed at (> 0). */
  readonly temperature: number
}

/** A step's positions [from, from + size) as a batch row in `slot`. */
export function batchRow(
  input: StageStepInput,
  slot: number,
  from: number,
  size: number,
  hiddenSize: number,
): BatchRow {
  const t = input.temperature ?? 0
  const H = hiddenSize
  return {
    slot,
    temperature: t > 0 ? t : 1,
    ...(input.tokens !== undefined ? { tokens: input.tokens.slice(from, from + size) } : {}),
    ...(input.hidden !== undefined
      ? { hidden: size === input.seqLen ? input.hidden : input.hidden.subarray(from * H, (from + size) * H) }
      : {}),
  }
}

/** What one row of a batch produced. */
export interface BatchRowOutput {
  /** [seqLen * hiddenSize] (every stage but the last). */
  readonly hidden?: Float32Array
  /** Last stage: the candidates of the row's last `logitRows` positions. */
  readonly rows?: RowTopK
  /** emitLogits: the full logits of those positions. */
  readonly logits?: Float32Array
}

/**
 * A run of the stage graph over consecutive slots [lo, lo + entries.length) of one pool, each
 * slot either a generation's rows or padding (undefined: it computes one throwaway row at
 * position 0 and is never written back). Every row has the same `seqLen`.
 */
export interface BatchRun {
  readonly pool: KvPool
  readonly lo: number
  readonly seqLen: number
  readonly entries: ReadonlyArray<BatchRow | undefined>
  /** Last stage: how many of each row's last positions get candidates (1, or seqLen). */
  readonly logitRows: number
}

/**
 * Runs one batch and appends each generation's new KV rows to its slot. A generation's rows
 * see only its own slot: GroupQueryAttention reads seqlens_k per batch entry, and the rest of the
 * graph is row-wise, so a generation's outputs do not depend on what shares its batch (ONNX
 * Runtime's CPU MatMul gives bit-identical rows for any batch of two or more; see ort-stage.ts
 * for the single-row case).
 */
export async function runBatch(
  session: InferenceSession,
  ort: OrtRuntime,
  config: ModelConfig,
  io: StageIo,
  run: BatchRun,
): Promise<Array<BatchRowOutput | undefined>> {
  const { pool, lo, seqLen: S, entries } = run
  const B = entries.length
  const H = config.hiddenSize
  const T = ort.Tensor
  const positions = new BigInt64Array(B * S)
  const seqlens = new Int32Array(B)
  let total = 1
  entries.forEach((e, b) => {
    if (e === undefined) return
    const start = pool.lengths[e.slot] as number
    for (let s = 0; s < S; s++) positions[b * S + s] = BigInt(start + s)
    seqlens[b] = start + S - 1
    total = Math.max(total, start + S)
  })
  const feeds: Record<string, Tensor> = {
    [io.positionIds]: new T('int64', positions, [B, S]),
    [io.seqlensK]: new T('int32', seqlens, [B]),
    [io.totalSequenceLength]: new T('int32', Int32Array.of(total), [1]),
  }
  if (io.isFirst) {
    const ids = new BigInt64Array(B * S)
    entries.forEach((e, b) => {
      for (let s = 0; s < S; s++) ids[b * S + s] = BigInt(e?.tokens?.[s] ?? 0)
    })
    feeds[io.inputIds] = new T('int64', ids, [B, S])
  } else {
    const hidden = B === 1 && entries[0] !== undefined ? entries[0].hidden : undefined
    const data = hidden ?? new Float32Array(B * S * H)
    if (hidden === undefined) {
      entries.forEach((e, b) => {
        if (e?.hidden !== undefined) data.set(e.hidden, b * S * H)
      })
    }
    feeds[io.hiddenIn] = new T('float32', data, [B, S, H])
  }
  const R = run.logitRows
  if (io.isLast) {
    const temps = new Float32Array(B * R).fill(1)
    entries.forEach((e, b) => {
      if (e !== undefined) temps.fill(e.temperature, b * R, (b + 1) * R)
    })
    feeds[io.temperature] = new T('float32', temps, [B * R, 1])
    feeds[io.logitRows] = new T('int64', BigInt64Array.of(BigInt(R)), [1])
  }
  const kvDims = [B, config.numKvHeads, pool.capacity, config.headDim]
  io.layers.forEach((names, l) => {
    const v = pool.view(l, lo, lo + B)
    feeds[names.pastKey] = new T('float32', v.keys, kvDims)
    feeds[names.pastValue] = new T('float32', v.values, kvDims)
  })
  const out = await session.run(feeds)

  const width = config.numKvHeads * config.headDim
  io.layers.forEach((names, l) => {
    const keys = out[names.newKey]?.data as Float32Array
    const values = out[names.newValue]?.data as Float32Array
    if (keys?.length !== B * S * width || values?.length !== B * S * width) {
      throw new GenerationError('ERR_STEP_ORDER', 'stage returned malformed KV rows')
    }
    entries.forEach((e, b) => {
      if (e !== undefined) pool.write(e.slot, l, keys, values, b * S, S)
    })
  })
  entries.forEach((e) => {
    if (e !== undefined) pool.lengths[e.slot] = (pool.lengths[e.slot] as number) + S
  })
  if (!io.isLast) {
    const hidden = out[io.hiddenOut]?.data as Float32Array
    if (hidden?.length !== B * S * H)
      throw new GenerationError('ERR_STEP_ORDER', 'stage returned malformed hidden states')
    if (B === 1) return [{ hidden }]
    return entries.map((e, b) =>
      e === undefined ? undefined : { hidden: hidden.slice(b * S * H, (b + 1) * S * H) },
    )
  }
  return lastStageRows(out, io, entries, R)
}

function lastStageRows(
  out: InferenceSession.OnnxValueMapType,
  io: StageIo,
  entries: ReadonlyArray<BatchRow | undefined>,
  R: number,
): Array<BatchRowOutput | undefined> {
  const B = entries.length
  const values = out[io.topkValues]?.data as Float32Array
  const ids64 = out[io.topkIds]?.data as BigInt64Array
  const lse = out[io.logSumExp]?.data as Float32Array
  const logits = out[io.logits]?.data as Float32Array | undefined
  if (
    values === undefined ||
    values.length % (B * R) !== 0 ||
    ids64?.length !== values.length ||
    lse?.length !== B * R
  ) {
    throw new GenerationError('ERR_STEP_ORDER', 'stage returned malformed top-k rows')
  }
  const k = values.length / (B * R)
  const ids = Int32Array.from(ids64, Number)
  const vocab = logits === undefined ? 0 : logits.length / (B * R)
  // A batch of one keeps the runtime's arrays (no copy); rows of a larger batch get their own.
  const cut = <A extends Float32Array | Int32Array>(a: A, from: number, to: number): A =>
    (B === 1 ? a : a.slice(from, to)) as A
  return entries.map((e, b) => {
    if (e === undefined) return undefined
    const r0 = b * R
    const rows: RowTopK = {
      rows: R,
      k,
      values: cut(values, r0 * k, (r0 + R) * k),
      ids: cut(ids, r0 * k, (r0 + R) * k),
      logSumExp: cut(lse, r0, r0 + R),
    }
    return logits === undefined ? { rows } : { rows, logits: cut(logits, r0 * vocab, (r0 + R) * vocab) }
  })
}

/** The last row of a RowTopK as TopKLogits (a copy when there are several rows). */
export function lastRow(rows: RowTopK): TopKLogits {
  const { k } = rows
  const at = (rows.rows - 1) * k
  if (rows.rows === 1)
    return { values: rows.values, ids: rows.ids, logSumExp: rows.logSumExp[0] ?? Number.NaN }
  return {
    values: rows.values.slice(at, at + k),
    ids: rows.ids.slice(at, at + k),
    logSumExp: rows.logSumExp[rows.rows - 1] ?? Number.NaN,
  }
}

/** A row's output as a StageStepOutput: with one candidate row, `topk`; with more, `rowTopk` too. */
export function toStepOutput(out: BatchRowOutput, allRows: boolean): StageStepOutput {
  if (out.rows === undefined) return out.hidden === undefined ? {} : { hidden: out.hidden }
  const { rows, logits } = out
  const topk = lastRow(rows)
  const result: StageStepOutput = allRows && rows.rows > 1 ? { topk, rowTopk: rows } : { topk }
  if (logits === undefined) return result
  return {
    ...result,
    logits: rows.rows === 1 ? logits : logits.slice(logits.length - logits.length / rows.rows),
  }
}

/**
 * The first `k` candidates of each position (StageStepInput.candidates), log-sum-exps unchanged:
 * they are over the whole vocabulary. Candidates are sorted, equal values lower id first, so these
 * are exactly what a top-k of k would have found; only fewer bytes go back to the coordinator.
 */
export function limitCandidates(out: StageStepOutput, k: number | undefined): StageStepOutput {
  const { topk, rowTopk } = out
  if (k === undefined || topk === undefined || topk.values.length <= k) return out
  const limited: StageStepOutput = {
    ...out,
    topk: { values: topk.values.slice(0, k), ids: topk.ids.slice(0, k), logSumExp: topk.logSumExp },
  }
  if (rowTopk === undefined || rowTopk.k <= k) return limited
  const values = new Float32Array(rowTopk.rows * k)
  const ids = new Int32Array(rowTopk.rows * k)
  for (let r = 0; r < rowTopk.rows; r++) {
    values.set(rowTopk.values.subarray(r * rowTopk.k, r * rowTopk.k + k), r * k)
    ids.set(rowTopk.ids.subarray(r * rowTopk.k, r * rowTopk.k + k), r * k)
  }
  return { ...limited, rowTopk: { rows: rowTopk.rows, k, values, ids, logSumExp: rowTopk.logSumExp } }
}

/** The output of a step run in chunks: hidden states (or per-position candidates) in order. */
export function joinChunks(parts: readonly StageStepOutput[], allRows: boolean): StageStepOutput {
  const last = parts[parts.length - 1] as StageStepOutput
  if (parts.length === 1) return last
  if (last.hidden !== undefined) return { hidden: concat(parts.map((p) => p.hidden as Float32Array)) }
  if (!allRows) return last
  const rows = parts.map((p) => p.rowTopk as RowTopK)
  const joined: RowTopK = {
    rows: rows.reduce((n, r) => n + r.rows, 0),
    k: (rows[0] as RowTopK).k,
    values: concat(rows.map((r) => r.values)),
    ids: Int32Array.from(concat(rows.map((r) => Float32Array.from(r.ids)))),
    logSumExp: concat(rows.map((r) => r.logSumExp)),
  }
  const result: StageStepOutput = { topk: lastRow(joined), rowTopk: joined }
  return last.logits === undefined ? result : { ...result, logits: last.logits }
}
