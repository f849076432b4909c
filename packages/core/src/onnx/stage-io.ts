import type { ModelConfig } from '../model/model-config.js'

export interface LayerKvNames {
  readonly layer: number
  readonly pastKey: string
  readonly pastValue: string
  /** float32 [B, S, kvHeads * headDim]: rotated keys of the new positions. */
  readonly newKey: string
  /** float32 [B, S, kvHeads * headDim]: values of the new positions. */
  readonly newValue: string
}

/**
 * Input/output names of a stage graph. Executors (onnxruntime-node, onnxruntime-web) and the
 * coordinator agree on these without looking inside the model.
 */
export interface StageIo {
  readonly isFirst: boolean
  readonly isLast: boolean
  /** int64 [B, S]; first stage only. B generations are batched, each with S new positions. */
  readonly inputIds: string
  /** float32 [B, S, H]; every stage but the first. */
  readonly hiddenIn: string
  /** float32 [B, S, H]; every stage but the last. */
  readonly hiddenOut: string
  /** int64 [B, S]: absolute positions of the new tokens. */
  readonly positionIds: string
  /** int32 [B]: per generation, its total length (past + new) minus one. */
  readonly seqlensK: string
  /** int32 [1]: the longest generation's past + new. */
  readonly totalSequenceLength: string
  /** float32 [B * R, 1]: per row, the temperature of its log-sum-exp; last stage only. */
  readonly temperature: string
  /**
   * int64 [1], last stage only: how many of the step's last positions get the LM head (R): 1
   * normally, seqLen for per-position candidates (StageStepInput.allRows).
   */
  readonly logitRows: string
  /** float32 [B * R, topK], each row descending (generation b's rows at b * R). */
  readonly topkValues: string
  /** int64 [B * R, topK]. */
  readonly topkIds: string
  /** float32 [B * R]: log Σ exp(logit / temperature) per row. */
  readonly logSumExp: string
  /** float32 [B * R, vocab], with emitLogits only. */
  readonly logits: string
  readonly layers: readonly LayerKvNames[]
}

export function stageIo(config: ModelConfig, layerStart: number, layerEnd: number): StageIo {
  const layers: LayerKvNames[] = []
  for (let l = layerStart; l < layerEnd; l++) {
    layers.push({
      layer: l,
      pastKey: `past_key_${l}`,
      pastValue: `past_value_${l}`,
      newKey: `new_key_${l}`,
      newValue: `new_value_${l}`,
    })
  }
  return {
    isFirst: layerStart === 0,
    isLast: layerEnd === config.numLayers,
    inputIds: 'input_ids',
    hiddenIn: 'hidden_in',
    hiddenOut: 'hidden_out',
    positionIds: 'position_ids',
    seqlensK: 'seqlens_k',
    totalSequenceLength: 'total_sequence_length',
    temperature: 'temperature',
    logitRows: 'logit_rows',
    topkValues: 'topk_values',
    topkIds: 'topk_ids',
    logSumExp: 'logsumexp',
    logits: 'logits',
    layers,
  }
}
