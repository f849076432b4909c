import { type ImportSource, toFloat32 } from '@butterfly/core'
import type { Llama2cDims } from './llama2c-reference.js'

/** Small enough for float64 reference passes, with GQA and rows that are whole Q4_0/Q8_0 blocks. */
export function testDims(vocabSize: number): Llama2cDims {
  return { dim: 64, hiddenDim: 96, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize, seqLen: 64 }
}

/** Every tensor of an import source, read and widened to float32. */
export async function readAll(source: ImportSource): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>()
  for (const t of source.tensors) out.set(t.name, Float32Array.from(toFloat32(await t.read())))
  return out
}
