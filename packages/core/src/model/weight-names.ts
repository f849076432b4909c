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
  postAttentionNorm: string
  gate: string
  up: string
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
    postAttentionNorm: `${p}.post_attention_layernorm.weight`,
    gate: `${p}.mlp.gate_proj.weight`,
    up: `${p}.mlp.up_proj.weight`,
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

/** Names and shapes of one layer's tensors. */
export function layerWeightShapes(config: ModelConfig, layer: number): Array<[string, readonly number[]]> {
  const { hiddenSize: h, numHeads, numKvHeads, headDim, intermediateSize: f } = config
  const qDim = numHeads * headDim
  const kvDim = numKvHeads * headDim
  const n = layerWeightNames(layer)
  const out: Array<[string, readonly number[]]> = [
    [n.inputNorm, [h]],
    [n.q, [qDim, h]],
    [n.k, [kvDim, h]],
    [n.v, [kvDim, h]],
    [n.o, [h, qDim]],
    [n.postAttentionNorm, [h]],
    [n.gate, [f, h]],
    [n.up, [f, h]],
    [n.down, [h, f]],
  ]
  if (config.attentionBias) out.push([n.qBias, [qDim]], [n.kBias, [kvDim]], [n.vBias, [kvDim]])
  return out
}
