import { GraphBuildError } from '../errors.js'
import { architectureTraits, type LayerAttention } from '../model/architecture.js'
import { attentionScaleOf, layerAttention, type ModelConfig, rotaryDimOf } from '../model/model-config.js'
import { layerWeightNames } from '../model/weight-names.js'
import type { OnnxGraph } from './onnx-graph.js'
import type { LayerKvNames } from './stage-io.js'
import { type SlidingWindow, windowAttention } from './window-attention.js'

/** What buildStageGraph lends the layer emitter: the graph, its inputs and weight loaders. */
export interface LayerContext {
  readonly g: OnnxGraph
  readonly config: ModelConfig
  /** int64 [1, S], int32 [1], int32 [1]: the stage's position and length inputs. */
  readonly positions: string
  readonly seqlensK: string
  readonly totalLen: string
  /** The sliding layers' shared row range and mask (built on first use). */
  readonly window: () => SlidingWindow
  /** The cos/sin cache constants of one layer kind ([maxContext, rotaryDim / 2]). */
  readonly ropeCache: (kind: LayerAttention) => { cos: string; sin: string }
  /** A weight as stored (fp32, or fp16 cast to fp32). */
  readonly load: (name: string, shape: readonly number[]) => Promise<string>
  /** x · Wᵀ (+ bias), MatMul or MatMulNBits. */
  readonly linear: (x: string, name: string, shape: readonly number[], bias?: string) => Promise<string>
  readonly shapeOf: (name: string) => readonly number[]
}

/**
 * RMSNorm weight as the graph multiplies by it: Gemma's (1 + w), added in fp32 (which ONNX
 * Runtime constant-folds), else w.
 */
export async function normWeight(ctx: LayerContext, name: string, size: number): Promise<string> {
  const w = await ctx.load(name, [size])
  if (architectureTraits(ctx.config.architecture).normOffset === 0) return w
  return ctx.g.op1('Add', [w, ctx.g.constantFloat('one', [1])])
}

/**
 * One decoder layer on `hidden` [1, S, H]; returns the new residual stream. Mirrors
 * ReferenceModel.layer trait by trait; the layer's output is always `Add(mlp, residual)` so a
 * stage boundary after it changes nothing.
 */
export async function emitLayer(
  ctx: LayerContext,
  layer: number,
  hidden: string,
  kv: LayerKvNames,
): Promise<string> {
  const { g, config } = ctx
  const t = architectureTraits(config.architecture)
  const { hiddenSize: H, numHeads, numKvHeads, headDim, intermediateSize: F } = config
  const eps = { float: config.rmsNormEps }
  const qDim = numHeads * headDim
  const kvDim = numKvHeads * headDim
  const n = layerWeightNames(layer)
  const kind = layerAttention(config, layer)
  const rmsNorm = async (x: string, name: string, size: number) =>
    g.op1('SimplifiedLayerNormalization', [x, await normWeight(ctx, name, size)], { axis: -1, epsilon: eps })

  const normed = await rmsNorm(hidden, n.inputNorm, H)
  let q: string
  let k: string
  let v: string
  if (t.fusedProjections) {
    // One MatMul over Phi-3's [q; k; v] rows, then Split along the output features.
    const bias = config.attentionBias ? `${n.qkv.slice(0, -'weight'.length)}bias` : undefined
    const qkv = await ctx.linear(normed, n.qkv, ctx.shapeOf(n.qkv), bias)
    ;[q, k, v] = split(g, qkv, [qDim, kvDim, kvDim]) as [string, string, string]
  } else {
    const bias = (name: string) => (config.attentionBias ? name : undefined)
    q = await ctx.linear(normed, n.q, ctx.shapeOf(n.q), bias(n.qBias))
    k = await ctx.linear(normed, n.k, ctx.shapeOf(n.k), bias(n.kBias))
    v = await ctx.linear(normed, n.v, ctx.shapeOf(n.v), bias(n.vBias))
  }
  if (t.qkNorm) {
    // Per-head RMSNorm (Qwen3, Gemma 3): [1, S, heads * d] -> [1, S, heads, d], norm the last axis.
    const headNorm = async (x: string, name: string, heads: number) => {
      const perHead = g.op1('Reshape', [x, g.constantInt64('heads', [0, 0, heads, headDim])])
      const normedHeads = await rmsNorm(perHead, name, headDim)
      return g.op1('Reshape', [normedHeads, g.constantInt64('flat', [0, 0, heads * headDim])])
    }
    q = await headNorm(q, n.qNorm, numHeads)
    k = await headNorm(k, n.kNorm, numKvHeads)
  }
  const cache = ctx.ropeCache(kind)
  const rope = (x: string, heads: number) => rotate(ctx, x, heads, cache)
  const pastK = g.input(kv.pastKey, 'float32', ['batch', numKvHeads, 'capacity', headDim])
  const pastV = g.input(kv.pastValue, 'float32', ['batch', numKvHeads, 'capacity', headDim])
  // The KV cache lives in the executor as a [1, kvHeads, capacity, headDim] buffer fed as
  // past; GQA reads its first seqlens_k + 1 - S rows. Its present outputs stay inside the
  // graph: only the new rows leave it, and the executor appends them. (onnxruntime-node
  // copies every fetched output into fresh memory, so fetching the whole cache each step
  // would cost O(context) allocation per token.)
  const kRot = rope(k, numKvHeads)
  const attrs: Record<string, number | { float: number }> = {
    num_heads: numHeads,
    kv_num_heads: numKvHeads,
    scale: { float: attentionScaleOf(config) },
  }
  // A sliding layer's query at p sees keys p - W + 1 .. p, which GQA cannot say on every EP
  // (see window-attention.ts). Full layers, and windows no context reaches past (Phi-4-mini's
  // 262144 over 131072 positions), keep the fused kernel.
  const qRot = rope(q, numHeads)
  const attn =
    kind === 'sliding' && (config.slidingWindow as number) < config.maxContext
      ? windowAttention(g, config, { q: qRot, k: kRot, v, pastK, pastV }, ctx.window())
      : g.op('GroupQueryAttention', [qRot, kRot, v, pastK, pastV, ctx.seqlensK, ctx.totalLen], {
          attrs,
          outputCount: 3,
          ms: true,
        })[0]
  g.output(kRot, kv.newKey, 'float32', ['batch', 'seq', kvDim])
  g.output(v, kv.newValue, 'float32', ['batch', 'seq', kvDim])
  let attnOut = await ctx.linear(attn as string, n.o, ctx.shapeOf(n.o))
  // Gemma 3 norms the attention output before the residual add and feeds the MLP through
  // pre_feedforward_layernorm; elsewhere post_attention_layernorm is the MLP's input norm.
  if (t.sandwichNorms) attnOut = await rmsNorm(attnOut, n.postAttentionNorm, H)
  const mlpNorm = t.sandwichNorms ? n.preFeedforwardNorm : n.postAttentionNorm
  // Outputs: normed, mean, inv_std_var, input+skip (the new residual stream).
  const [normed2, , , residual] = g.op(
    'SkipSimplifiedLayerNormalization',
    [attnOut, hidden, await normWeight(ctx, mlpNorm, H)],
    { attrs: { epsilon: eps }, outputCount: 4, ms: true },
  )
  let gate: string
  let up: string
  if (t.fusedProjections) {
    const gateUp = await ctx.linear(normed2 as string, n.gateUp, ctx.shapeOf(n.gateUp))
    ;[gate, up] = split(g, gateUp, [F, F]) as [string, string]
  } else {
    gate = await ctx.linear(normed2 as string, n.gate, ctx.shapeOf(n.gate))
    up = await ctx.linear(normed2 as string, n.up, ctx.shapeOf(n.up))
  }
  const act = g.op1('Mul', [t.activation === 'silu' ? silu(g, gate) : geluTanh(g, gate), up])
  let down = await ctx.linear(act, n.down, ctx.shapeOf(n.down))
  if (t.sandwichNorms) down = await rmsNorm(down, n.postFeedforwardNorm, H)
  return g.op1('Add', [down, residual as string])
}

/** Splits the last axis of a [1, S, sum(sizes)] tensor. */
function split(g: OnnxGraph, x: string, sizes: readonly number[]): string[] {
  const outs = g.op('Split', [x, g.constantInt64('split', sizes)], {
    attrs: { axis: -1 },
    outputCount: sizes.length,
  })
  if (outs.length !== sizes.length) throw new GraphBuildError('Split produced the wrong number of outputs')
  return outs
}

function silu(g: OnnxGraph, x: string): string {
  return g.op1('Mul', [x, g.op1('Sigmoid', [x])])
}

/**
 * transformers' gelu_pytorch_tanh from primitive ops (Mul, Add, Tanh run on every execution
 * provider): 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
 */
function geluTanh(g: OnnxGraph, x: string): string {
  const c = (v: number) => g.constantFloat('gelu_c', [v])
  const cube = g.op1('Mul', [g.op1('Mul', [x, x]), x])
  const inner = g.op1('Mul', [
    g.op1('Add', [x, g.op1('Mul', [cube, c(0.044715)])]),
    c(Math.sqrt(2 / Math.PI)),
  ])
  const onePlus = g.op1('Add', [g.op1('Tanh', [inner]), c(1)])
  return g.op1('Mul', [g.op1('Mul', [x, onePlus]), c(0.5)])
}

/**
 * Non-interleaved RoPE on [1, S, heads * headDim]. Partial rotary (Phi-4-mini) rotates only the
 * first rotaryDim dims of each head: Split them off, rotate, Concat the rest back, rather than
 * rely on RotaryEmbedding's rotary_embedding_dim attribute, which not every EP implements.
 */
function rotate(ctx: LayerContext, x: string, heads: number, cache: { cos: string; sin: string }): string {
  const { g, config } = ctx
  const rot = rotaryDimOf(config)
  const d = config.headDim
  const rope = (y: string) =>
    g.op1(
      'RotaryEmbedding',
      [y, ctx.positions, cache.cos, cache.sin],
      { interleaved: 0, num_heads: heads },
      true,
    )
  if (rot === d) return rope(x)
  const perHead = g.op1('Reshape', [x, g.constantInt64('heads', [0, 0, heads, d])])
  const [head, tail] = g.op('Split', [perHead, g.constantInt64('split', [rot, d - rot])], {
    attrs: { axis: -1 },
    outputCount: 2,
  })
  const flatHead = g.op1('Reshape', [head as string, g.constantInt64('flat', [0, 0, heads * rot])])
  const rotated = g.op1('Reshape', [rope(flatHead), g.constantInt64('heads', [0, 0, heads, rot])])
  const joined = g.op1('Concat', [rotated, tail as string], { axis: -1 })
  return g.op1('Reshape', [joined, g.constantInt64('flat', [0, 0, heads * d])])
}
