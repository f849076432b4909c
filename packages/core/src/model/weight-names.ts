import { architectureTraits } from './architecture.js'
import type { ModelConfig } from './model-config.js'

/**
 * Hugging Face Llama tensor names. Linear weights are stored [out, in] as in PyTorch;
 * the graph builder transposes them for ONNX MatMul.
 */
export const EMBED_TOKENS = 'model.embed_tokens.weight'
export const FINAL_NORM = 'model.norm.weight'
export const LM_HEAD = 'lm_head.weight'

export interface LayerWeightNames {
  inputNorm: string
  q: string
  k: string
  v: string
  o: string
  qBias: string
  kBias: string
  vBias: string
  /** Per-head RMSNorm weights of q and k (Qwen3, Gemma 3). */
  qNorm: string
  kNorm: string
  /** Phi-3's fused q/k/v projection, rows [q; k; v]. */
  qkv: string
  /** MLP input norm, or (Gemma 3, sandwichNorms) the norm of the attention output. */
  postAttentionNorm: string
  /** Gemma 3: the MLP input norm and the norm of the MLP output. */
  preFeedforwardNorm: string
  postFeedforwardNorm: string
  gate: string
  up: string
  /** Phi-3's fused gate/up projection, rows [gate; up]. */
  gateUp: string
  down: string
}

export function layerWeightNames(layer: number): LayerWeightNames {
  const p = `model.layers.${layer}`
  return {
    inputNorm: `${p}.input_layernorm.weight`,
    q: `${p}.self_attn.q_proj.weight`,
    k: `${p}.self_attn.k_proj.weight`,
    v: `${p}.self_attn.v_proj.weight`,
    o: `${p}.self_attn.o_proj.weight`,
    qBias: `${p}.self_attn.q_proj.bias`,
    kBias: `${p}.self_attn.k_proj.bias`,
    vBias: `${p}.self_attn.v_proj.bias`,
    qNorm: `${p}.self_attn.q_norm.weight`,
    kNorm: `${p}.self_attn.k_norm.weight`,
    qkv: `${p}.self_attn.qkv_proj.weight`,
    postAttentionNorm: `${p}.post_attention_layernorm.weight`,
    preFeedforwardNorm: `${p}.pre_feedforward_layernorm.weight`,
    postFeedforwardNorm: `${p}.post_feedforward_layernorm.weight`,
    gate: `${p}.mlp.gate_proj.weight`,
    up: `${p}.mlp.up_proj.weight`,
    gateUp: `${p}.mlp.gate_up_proj.weight`,
    down: `${p}.mlp.down_proj.weight`,
  }
}

/** Expected shape of every tensor the model needs, keyed by name. */
export function expectedWeightShapes(config: ModelConfig): Map<string, readonly number[]> {
  const { hiddenSize: h, vocabSize: v } = config
  const shapes = new Map<string, readonly number[]>()
  shapes.set(EMBED_TOKENS, [v, h])
  for (let i = 0; i < config.numLayers; i++) {
    for (const [name, shape] of layerWeightShapes(config, i)) shapes.set(name, shape)
  }
  shapes.set(FINAL_NORM, [h])
  if (!config.tieWordEmbeddings) shapes.set(LM_HEAD, [v, h])
  return shapes
}

/**
 * Names and shapes of one layer's tensors, as the architecture's checkpoints store them
 * (Phi-3 keeps its fused projections; the graph splits their outputs).
 */
export function layerWeightShapes(config: ModelConfig, layer: number): Array<[string, readonly number[]]> {
  const { hiddenSize: h, numHeads, numKvHeads, headDim, intermediateSize: f } = config
  const traits = architectureTraits(config.architecture)
  const qDim = numHeads * headDim
  const kvDim = numKvHeads * headDim
  const n = layerWeightNames(layer)
  const out: Array<[string, readonly number[]]> = [[n.inputNorm, [h]]]
  if (traits.fusedProjections) out.push([n.qkv, [qDim + 2 * kvDim, h]])
  else out.push([n.q, [qDim, h]], [n.k, [kvDim, h]], [n.v, [kvDim, h]])
  if (traits.qkNorm) out.push([n.qNorm, [headDim]], [n.kNorm, [headDim]])
  out.push([n.o, [h, qDim]], [n.postAttentionNorm, [h]])
  if (traits.sandwichNorms) out.push([n.preFeedforwardNorm, [h]], [n.postFeedforwardNorm, [h]])
  if (traits.fusedProjections) out.push([n.gateUp, [2 * f, h]])
  else out.push([n.gate, [f, h]], [n.up, [f, h]])
  out.push([n.down, [h, f]])
  if (config.attentionBias) {
    if (traits.fusedProjections) out.push([`${n.qkv.slice(0, -'weight'.length)}bias`, [qDim + 2 * kvDim]])
    else out.push([n.qBias, [qDim]], [n.kBias, [kvDim]], [n.vBias, [kvDim]])
  }
  return out
}
