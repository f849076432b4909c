/**
 * The decoder families Butterfly runs. They share one layer skeleton (norm, attention with RoPE,
 * residual, norm, gated MLP, residual); what tells them apart is a handful of traits, fixed by the
 * family, that the graph builder, the reference model and the importers read from here.
 */
export type Architecture = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'phi3' | 'gemma3' | 'smollm'

export const ARCHITECTURES: readonly Architecture[] = [
  'llama',
  'mistral',
  'qwen2',
  'qwen3',
  'phi3',
  'gemma3',
  'smollm',
]

/** What attention a layer does: over every earlier key, or over the last `slidingWindow` keys. */
export type LayerAttention = 'full' | 'sliding'

export interface ArchitectureTraits {
  /** config.json `model_type` we write (and the first we accept). */
  readonly modelType: string
  /** config.json `architectures[0]`. */
  readonly hfClass: string
  /** The MLP's gate activation: SiLU (SwiGLU) or tanh-approximated GELU (GeGLU). */
  readonly activation: 'silu' | 'gelu_tanh'
  /** RMSNorm multiplies by (1 + w) instead of w (Gemma stores the offset from one). */
  readonly normOffset: 0 | 1
  /** RMSNorm over each head of q and k (weights [headDim]) before RoPE (Qwen3, Gemma 3). */
  readonly qkNorm: boolean
  /**
   * Gemma 3's four norms per layer: the attention output is normed (post_attention_layernorm)
   * before the residual add, the MLP input by pre_feedforward_layernorm and its output by
   * post_feedforward_layernorm. Without it, post_attention_layernorm is the MLP's input norm.
   */
  readonly sandwichNorms: boolean
  /** q/k/v stored as one `qkv_proj` and gate/up as one `gate_up_proj` (Phi-3). */
  readonly fusedProjections: boolean
  /** Embeddings are multiplied by sqrt(hidden_size) (Gemma). */
  readonly scaledEmbeddings: boolean
  /** `attention_bias` when config.json does not say. */
  readonly defaultAttentionBias: boolean
  /** `tie_word_embeddings` when config.json does not say. */
  readonly defaultTiedEmbeddings: boolean
}

const LLAMA_LIKE = {
  activation: 'silu',
  normOffset: 0,
  qkNorm: false,
  sandwichNorms: false,
  fusedProjections: false,
  scaledEmbeddings: false,
  defaultAttentionBias: false,
  defaultTiedEmbeddings: false,
} as const

const TRAITS: Readonly<Record<Architecture, ArchitectureTraits>> = {
  llama: { ...LLAMA_LIKE, modelType: 'llama', hfClass: 'LlamaForCausalLM' },
  mistral: { ...LLAMA_LIKE, modelType: 'mistral', hfClass: 'MistralForCausalLM' },
  qwen2: { ...LLAMA_LIKE, modelType: 'qwen2', hfClass: 'Qwen2ForCausalLM', defaultAttentionBias: true },
  qwen3: { ...LLAMA_LIKE, modelType: 'qwen3', hfClass: 'Qwen3ForCausalLM', qkNorm: true },
  phi3: { ...LLAMA_LIKE, modelType: 'phi3', hfClass: 'Phi3ForCausalLM', fusedProjections: true },
  gemma3: {
    modelType: 'gemma3_text',
    hfClass: 'Gemma3ForCausalLM',
    activation: 'gelu_tanh',
    normOffset: 1,
    qkNorm: true,
    sandwichNorms: true,
    fusedProjections: false,
    scaledEmbeddings: true,
    defaultAttentionBias: false,
    defaultTiedEmbeddings: true,
  },
  // SmolLM checkpoints are Llama models; only model_type keeps them apart on a round trip.
  smollm: { ...LLAMA_LIKE, modelType: 'smollm', hfClass: 'LlamaForCausalLM' },
}

export function architectureTraits(architecture: Architecture): ArchitectureTraits {
  return TRAITS[architecture]
}

/** config.json model_type values we read, and the architecture each names. */
export const MODEL_TYPES: Readonly<Record<string, Architecture>> = {
  llama: 'llama',
  mistral: 'mistral',
  qwen2: 'qwen2',
  qwen3: 'qwen3',
  phi3: 'phi3',
  gemma3_text: 'gemma3',
  smollm: 'smollm',
}
