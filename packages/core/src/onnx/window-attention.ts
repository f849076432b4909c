import { GraphBuildError } from '../errors.js'
import { attentionScaleOf, type ModelConfig } from '../model/model-config.js'
import type { OnnxGraph } from './onnx-graph.js'

/**
 * Sliding-window attention from standard ops. GroupQueryAttention cannot express a window
 * portably: onnxruntime 1.30's CPU kernel (and WASM, the same code) keeps local_window_size
 * keys, older releases one more, and the WebGPU kernel ignores both local_window_size and
 * attention_bias (e2e/families-browser.test.ts measured it). So a sliding layer concatenates the
 * past rows the chunk can still see (from the first query's window start, see SlidingWindow)
 * with the new keys, adds the mask to the scores, and runs Softmax and two MatMuls; query heads
 * share kv heads as floor(h / group). Cost per query is O(window + S), not O(context).
 *
 * q: [1, S, heads * d] and k, v: [1, S, kvHeads * d] (rotated); past: [1, kvHeads, capacity, d];
 * returns [1, S, heads * d] like GQA's first output.
 */
/**
 * What every sliding layer of a stage shares, built once: the past rows the chunk of S new
 * queries at positions past .. past + S - 1 can still see, [start, past) with
 * start = max(0, past - (window - 1)), and the additive mask over those keys and the new ones,
 * [S, total - start]: 0 where key position j lies in p - (window - 1) .. p, -1e9 elsewhere.
 * In float: positions stay exact integers below 2^24, far past any context we serve, and
 * exp(-1e9 + score) is exactly 0 in fp32, so masked keys drop out as in the reference.
 */
export interface SlidingWindow {
  /** int64 [1] each: the row range of the executor's cache to read. */
  readonly start: string
  readonly past: string
  /** float32 [S, total - start]. */
  readonly mask: string
}

export function slidingWindow(
  g: OnnxGraph,
  config: ModelConfig,
  positions: string,
  totalLen: string,
): SlidingWindow {
  const window = config.slidingWindow
  if (window === undefined) throw new GraphBuildError('sliding layer without a sliding window')
  const scalar = (hint: string, v: number) =>
    g.constant(hint, 'float32', [], new Uint8Array(Float32Array.of(v).buffer))
  const toScalar = (x: string) => g.op1('Reshape', [x, g.constantInt64('scalar', [])])
  const total = g.op1('Cast', [toScalar(totalLen)], { to: 1 })
  const seq = g.op1('Cast', [toScalar(g.op1('Shape', [positions], { start: 1, end: 2 }))], { to: 1 })
  const pastF = g.op1('Sub', [total, seq])
  const startF = g.op1('Max', [g.op1('Sub', [pastF, scalar('reach', window - 1)]), scalar('zero', 0)])
  const toIndex = (x: string) =>
    g.op1('Reshape', [g.op1('Cast', [x], { to: 7 }), g.constantInt64('one', [1])])
  const keys = g.op1('Range', [startF, total, scalar('one', 1)])
  const pos = g.op1('Reshape', [g.op1('Cast', [positions], { to: 1 }), g.constantInt64('col', [-1, 1])])
  const future = g.op1('Greater', [keys, pos])
  const old = g.op1('Less', [keys, g.op1('Sub', [pos, scalar('reach', window - 1)])])
  const mask = g.op1('Where', [g.op1('Or', [future, old]), scalar('masked', -1e9), scalar('zero', 0)])
  return { start: toIndex(startF), past: toIndex(pastF), mask }
}

/**
 * q: [1, S, heads * d] and k, v: [1, S, kvHeads * d] (rotated); past: [1, kvHeads, capacity, d];
 * returns [1, S, heads * d] like GQA's first output.
 */
export function windowAttention(
  g: OnnxGraph,
  config: ModelConfig,
  tensors: { q: string; k: string; v: string; pastK: string; pastV: string },
  window: SlidingWindow,
): string {
  const { numHeads, numKvHeads, headDim: d } = config
  const group = numHeads / numKvHeads
  const i64 = (hint: string, values: readonly number[]) => g.constantInt64(hint, values)
  /** [1, S, n * d] -> [1, n, S, d], after the visible past rows of `cache`: [1, n, keys, d]. */
  const withPast = (cache: string, x: string) => {
    const heads = g.op1('Reshape', [x, i64('heads', [0, 0, numKvHeads, d])])
    const rows = g.op1('Slice', [cache, window.start, window.past, i64('axis', [2])])
    return g.op1('Concat', [rows, g.op1('Transpose', [heads], { perm: [0, 2, 1, 3] })], { axis: 2 })
  }
  const keys = withPast(tensors.pastK, tensors.k)
  const values = withPast(tensors.pastV, tensors.v)
  // [1, S, heads * d] -> [1, kvHeads, group, S, d]: head h = kv * group + j.
  const qHeads = g.op1(
    'Transpose',
    [g.op1('Reshape', [tensors.q, i64('groups', [0, 0, numKvHeads, group, d])])],
    {
      perm: [0, 2, 3, 1, 4],
    },
  )
  const scaled = g.op1('Mul', [qHeads, g.constantFloat('scale', [attentionScaleOf(config)])])
  const keysT = g.op1('Unsqueeze', [g.op1('Transpose', [keys], { perm: [0, 1, 3, 2] }), i64('axes', [2])])
  const scores = g.op1('Add', [g.op1('MatMul', [scaled, keysT]), window.mask])
  const probs = g.op1('Softmax', [scores], { axis: -1 })
  const out = g.op1('MatMul', [probs, g.op1('Unsqueeze', [values, i64('axes', [2])])])
  return g.op1('Reshape', [
    g.op1('Transpose', [out], { perm: [0, 3, 1, 2, 4] }),
    i64('flat', [0, 0, numHeads * d]),
  ])
}
