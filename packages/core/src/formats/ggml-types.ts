/**
 * ggml tensor types as GGUF numbers them. `blockSize` values share one `blockBytes` record;
 * types whose layout this build does not know have neither, so their tensors can still be listed
 * (and refused by name) but not read.
 */
export interface GgmlTypeInfo {
  readonly id: number
  readonly name: string
  readonly blockSize: number
  readonly blockBytes: number
}

const KNOWN: ReadonlyArray<[number, string, number, number]> = [
  [0, 'F32', 1, 4],
  [1, 'F16', 1, 2],
  [2, 'Q4_0', 32, 18],
  [3, 'Q4_1', 32, 20],
  [6, 'Q5_0', 32, 22],
  [7, 'Q5_1', 32, 24],
  [8, 'Q8_0', 32, 34],
  [9, 'Q8_1', 32, 36],
  [10, 'Q2_K', 256, 84],
  [11, 'Q3_K', 256, 110],
  [12, 'Q4_K', 256, 144],
  [13, 'Q5_K', 256, 176],
  [14, 'Q6_K', 256, 210],
  [15, 'Q8_K', 256, 292],
  [24, 'I8', 1, 1],
  [25, 'I16', 1, 2],
  [26, 'I32', 1, 4],
  [27, 'I64', 1, 8],
  [28, 'F64', 1, 8],
  [30, 'BF16', 1, 2],
]

/** Types ggml has that this build cannot even size; named in errors. */
const UNSIZED: ReadonlyArray<[number, string]> = [
  [16, 'IQ2_XXS'],
  [17, 'IQ2_XS'],
  [18, 'IQ3_XXS'],
  [19, 'IQ1_S'],
  [20, 'IQ4_NL'],
  [21, 'IQ3_S'],
  [22, 'IQ2_S'],
  [23, 'IQ4_XS'],
  [29, 'IQ1_M'],
  [34, 'TQ1_0'],
  [35, 'TQ2_0'],
  [39, 'MXFP4'],
]

export const GGML_TYPES: ReadonlyMap<number, GgmlTypeInfo> = new Map(
  KNOWN.map(([id, name, blockSize, blockBytes]) => [id, Object.freeze({ id, name, blockSize, blockBytes })]),
)

/** "Q4_K (12)" for a type we know by name, "42" otherwise. */
export function ggmlTypeName(id: number): string {
  const name = GGML_TYPES.get(id)?.name ?? UNSIZED.find(([i]) => i === id)?.[1]
  return name === undefined ? String(id) : `${name} (${id})`
}
