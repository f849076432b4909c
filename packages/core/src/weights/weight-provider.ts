import type { RawTensor } from './tensor.js'

/** Fetches one named tensor; a peer only ever asks for its own layers. */
export type WeightProvider = (name: string, shape: readonly number[]) => Promise<RawTensor>
