import { TensorError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import type { RawTensor } from '../weights/tensor.js'

/** One tensor of a checkpoint being imported, already named and shaped as Hugging Face Llama. */
export interface ImportTensor {
  /** Hugging Face name, e.g. `model.layers.0.self_attn.q_proj.weight`. */
  readonly name: string
  /** Hugging Face (PyTorch) shape. */
  readonly shape: readonly number[]
  /** How the source stores it (`F32`, `BF16`, `Q4_0`, ...), for messages. */
  readonly sourceType: string
  /** Bytes read from the source, for progress. */
  readonly sourceBytes: number
  /**
   * Reads, dequantizes and re-lays the tensor: F32, F16 or BF16 data in Hugging Face layout
   * (rotate_half q/k rows). One call per tensor, so the caller holds one tensor at a time.
   */
  read(signal?: AbortSignal): Promise<RawTensor>
}

/** A tokenizer converted to what every Butterfly loader reads: tokenizer.json (+ its config). */
export interface ImportTokenizer {
  readonly json: Record<string, unknown>
  readonly config?: Record<string, unknown>
}

/** A checkpoint in some foreign format, seen as a Hugging Face Llama model. */
export interface ImportSource {
  readonly format: 'llama2c' | 'gguf' | 'hf'
  readonly config: ModelConfig
  /** Every tensor expectedWeightShapes(config) lists, in that order. */
  readonly tensors: readonly ImportTensor[]
  /** Absent when the format carries none (llama2.c, or an HF directory given --tokenizer). */
  readonly tokenizer?: ImportTokenizer
}

/**
 * Reorders the rows of a q or k projection from Meta's interleaved RoPE layout (pairs 2i, 2i+1
 * of each head rotate together; llama2.c and GGUF store this) into Hugging Face's rotate_half
 * layout (i and i + headDim/2 rotate together): HF row h*d + p*d/2 + i = Meta row h*d + 2i + p.
 * This is HF's convert_llama_weights_to_hf `permute`. Rows are moved as opaque byte runs, so it
 * works for any element type; `data` holds `heads * headDim` rows of `rowBytes` bytes.
 */
export function metaToHfRows(data: Uint8Array, heads: number, headDim: number, rowBytes: number): Uint8Array {
  if (heads * headDim * rowBytes !== data.byteLength || headDim % 2 !== 0) {
    throw new TensorError(
      'ERR_TENSOR_SHAPE',
      `cannot permute ${data.byteLength} bytes as ${heads} heads x ${headDim} rows x ${rowBytes} bytes`,
    )
  }
  const out = new Uint8Array(data.byteLength)
  const half = headDim / 2
  for (let h = 0; h < heads; h++) {
    for (let p = 0; p < 2; p++) {
      for (let i = 0; i < half; i++) {
        const src = (h * headDim + 2 * i + p) * rowBytes
        const dst = (h * headDim + p * half + i) * rowBytes
        out.set(data.subarray(src, src + rowBytes), dst)
      }
    }
  }
  return out
}
