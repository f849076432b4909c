import { architectureTraits } from './architecture.js'
import { INT4_QUANT_METHOD, layerAttention, type ModelConfig } from './model-config.js'
import { ropeScalingToJson } from './rope-scaling.js'
import { validateModelConfig } from './validate-model-config.js'

/** Hugging Face style config.json; parseModelConfig(modelConfigToJson(c)) deep-equals c. */
export function modelConfigToJson(config: ModelConfig): Record<string, unknown> {
  const c = validateModelConfig(config)
  const traits = architectureTraits(c.architecture)
  const json: Record<string, unknown> = {
    architectures: [traits.hfClass],
    model_type: traits.modelType,
    [c.architecture === 'gemma3' ? 'hidden_activation' : 'hidden_act']:
      traits.activation === 'silu' ? 'silu' : 'gelu_pytorch_tanh',
    hidden_size: c.hiddenSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    intermediate_size: c.intermediateSize,
    vocab_size: c.vocabSize,
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.rmsNormEps,
    tie_word_embeddings: c.tieWordEmbeddings,
    max_position_embeddings: c.maxContext,
    attention_bias: c.attentionBias,
    rope_scaling: c.ropeScaling === undefined ? null : ropeScalingToJson(c.ropeScaling),
  }
  if (c.bosTokenId !== undefined) json.bos_token_id = c.bosTokenId
  if (c.eosTokenId !== undefined) json.eos_token_id = c.eosTokenIds ? [...c.eosTokenIds] : c.eosTokenId
  if (c.rotaryDim !== undefined) json.partial_rotary_factor = c.rotaryDim / c.headDim
  if (c.architecture === 'qwen2' || c.architecture === 'qwen3')
    json.use_sliding_window = c.slidingWindow !== undefined
  if (c.slidingWindow !== undefined) {
    json.sliding_window = c.slidingWindow
    json.layer_types = Array.from({ length: c.numLayers }, (_, l) =>
      layerAttention(c, l) === 'full' ? 'full_attention' : 'sliding_attention',
    )
  } else if (c.architecture !== 'llama' && c.architecture !== 'smollm') json.sliding_window = null
  if (c.architecture === 'gemma3') {
    json.rope_local_base_freq = c.localRopeTheta ?? c.ropeTheta
    json.query_pre_attn_scalar = c.queryPreAttnScalar ?? c.headDim
  }
  if (c.quantization !== undefined) {
    json.quantization_config = {
      quant_method: INT4_QUANT_METHOD,
      bits: c.quantization.bits,
      block_size: c.quantization.blockSize,
      symmetric: true,
      lm_head: c.quantization.lmHead,
    }
  }
  return json
}
