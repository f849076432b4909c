import type { ModelConfig } from '../model/model-config.js'
import { readInt4 } from '../quant/weight-encoding.js'
import type { WeightProvider } from '../weights/weight-provider.js'
import type { OnnxGraph } from './onnx-graph.js'

/**
 * How MatMulNBits multiplies int4 weights: 'fp32' dequantises them (the graph equals a MatMul over
 * the dequantised weights up to summation order); 'int8' quantises each block of the activations
 * to int8 and takes integer dot products (accuracy_level 4), as llama.cpp's Q8_0 does: about twice
 * as fast on CPU, and a numeric class of its own (control-protocol's 'int8a').
 */
export type Int4Compute = 'fp32' | 'int8'

/**
 * y = x · Wᵀ for an int4 weight W [N, K], as ONNX Runtime's com.microsoft.MatMulNBits: the
 * packed levels go in as uint8 [N, blocks, blockSize / 2] and the scales as float32 (the type
 * of the activations, which the op requires; float16 scales in the file widen exactly). No
 * zero-point input: the op's default of 8 is the symmetric format's. accuracy_level is set
 * only for 'int8' compute (Int4Compute).
 */
export async function matMulNBits(
  g: OnnxGraph,
  x: string,
  config: ModelConfig,
  weights: WeightProvider,
  name: string,
  shape: readonly number[],
  compute: Int4Compute = 'fp32',
): Promise<string> {
  const w = await readInt4(config, weights, name, shape)
  const b = g.constant(`${name}.qweight`, 'uint8', [w.n, w.blocks, w.blockSize / 2], w.qweight)
  const scales = g.constant(
    `${name}.scales`,
    'float32',
    [w.n * w.blocks],
    new Uint8Array(w.scales.buffer, w.scales.byteOffset, w.scales.byteLength),
  )
  const attrs = { K: w.k, N: w.n, bits: 4, block_size: w.blockSize }
  return g.op1(
    'MatMulNBits',
    [x, b, scales],
    compute === 'int8' ? { ...attrs, accuracy_level: 4 } : attrs,
    true,
  )
}
