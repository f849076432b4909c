import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import type { ModelConfig } from '../model/model-config.js'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, layerWeightShapes } from '../model/weight-names.js'
import { storedTensorNames } from '../quant/weight-encoding.js'
import type { RemoteModel } from '../remote/remote-model.js'

/** Stored tensor names a stage of layers [start, end) loads (an int4 weight's two entries). */
export function stageTensorNames(config: ModelConfig, start: number, end: number): string[] {
  const names: string[] = []
  if (start === 0) names.push(EMBED_TOKENS)
  for (let l = start; l < end; l++) for (const [n] of layerWeightShapes(config, l)) names.push(n)
  if (end === config.numLayers) {
    names.push(FINAL_NORM)
    if (!config.tieWordEmbeddings) names.push(LM_HEAD)
    else if (start !== 0) names.push(EMBED_TOKENS)
  }
  return names.flatMap((n) => storedTensorNames(config, n))
}

/**
 * What a stage is built from: the manifest's checksum of every tensor it holds (each download is
 * checked against it) and the rounding asked for. A stage cache names its entries by it, and a
 * worker that moves to another server keeps its stage when the new server's files give the same.
 */
export function stageFingerprint(
  remote: Pick<RemoteModel, 'manifest'>,
  names: readonly string[],
  weights: 'fp32' | 'fp16',
): string {
  const text = JSON.stringify([weights, names.map((n) => [n, remote.manifest.tensors[n]?.sha256])])
  return bytesToHex(sha256(new TextEncoder().encode(text)))
}
