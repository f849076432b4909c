import type { ModelConfig } from '../model/model-config.js'
import { readInt4 } from '../quant/weight-encoding.js'
import type { WeightProvider } from '../weights/weight-provider.js'
import type { OnnxGraph } from './onnx-graph.js'

/**
 * y = x · Wᵀ for an int4 weight W [N, K], as ONNX Runtime's com.microsoft.MatMulNBits: the
 * packed levels go in as uint8 [N, blocks, blockSize / 2] and the scales as float32 (the type
 * of the activations, which the op requires; float16 scales in the file widen exactly). No
 * zero-point input: the op's default of 8 is the symmetric format's. accuracy_level stays
 * unset, so the products are computed in fp32 and the graph equals a MatMul over the
 * dequantised weights up to summation order.
 */
export async function matMulNBits(
  g: OnnxGraph,
  x: string,
  config: ModelConfig,
  weights: WeightProvider,
  name: string,
  shape: readonly number[],
): Promise<string> {
  const w = await readInt4(config, weights, name, shape)
  const b = g.constant(`${name}.qweight`, 'uint8', [w.n, w.blocks, w.blockSize / 2], w.qweight)
  const scales = g.constant(
    `${name}.scales`,
    'float32',
    [w.n * w.blocks],
    new Uint8Array(w.scales.buffer, w.scales.byteOffset, w.scales.byteLength),
  )
  return g.op1('MatMulNBits', [x, b, scales], { K: w.k, N: w.n, bits: 4, block_size: w.blockSize }, true)
}
