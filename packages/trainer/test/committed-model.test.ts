import { existsSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import {
  bytesSource,
  byteTokenizerJson,
  parseModelConfig,
  ReferenceModel,
  SafetensorsReader,
} from '@butterfly/core'
import { describe, expect, it } from 'vitest'
import { BOS_ID, heldOutWindows, loadCorpus } from '../src/corpus.js'
import { readModelDir } from '../src/model-dir.js'
import { ParamLayout } from '../src/param-layout.js'
import { Transformer } from '../src/transformer.js'
import { referenceLogits } from './reference.js'

// The model `npm start` serves, as committed, checked on its own held-out data.
const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const MODEL = `${ROOT}models/shakespeare`
const CORPUS = `${ROOT}../shared/data/tinyshakespeare.txt`
const HAS_CORPUS = existsSync(CORPUS)
/** The fixed slice: the first WINDOWS context-length windows of the held-out 10%. */
const WINDOWS = 8

describe('models/shakespeare', () => {
  it('is a Butterfly model directory: config, byte tokenizer, F32 safetensors under 5 MB', async () => {
    const config = parseModelConfig(JSON.parse(await readFile(`${MODEL}/config.json`, 'utf8')))
    expect(config).toMatchObject({
      architecture: 'llama',
      vocabSize: 259,
      tieWordEmbeddings: true,
      attentionBias: false,
    })
    expect(JSON.parse(await readFile(`${MODEL}/tokenizer.json`, 'utf8'))).toEqual(byteTokenizerJson(259))
    const bytes = await readFile(`${MODEL}/model.safetensors`)
    expect((await stat(`${MODEL}/model.safetensors`)).size).toBeLessThanOrEqual(5 * 1024 * 1024)
    const reader = await SafetensorsReader.open(bytesSource('model.safetensors', new Uint8Array(bytes)))
    expect([...reader.tensors.values()].every((t) => t.dtype === 'F32')).toBe(true)
    const { params } = await readModelDir(MODEL)
    expect(params.length).toBe(new ParamLayout(config).size)
    expect(params.every(Number.isFinite)).toBe(true)
  })

  it.skipIf(!HAS_CORPUS)(
    `scores <= 1.9 nats/byte on a fixed held-out slice with core's ReferenceModel (skipped when ${CORPUS} is absent)`,
    async () => {
      const { config, params } = await readModelDir(MODEL)
      const corpus = await loadCorpus(CORPUS)
      const T = config.maxContext
      const windows = heldOutWindows(corpus, T).slice(0, WINDOWS)
      const layout = new ParamLayout(config)
      const ref = new ReferenceModel(
        config,
        new Map([...layout.tensors(params)].map(([n, t]) => [n, t.data])),
      )
      const fast = new Transformer(layout, 1, T)
      let refLoss = 0
      let fastLoss = 0
      for (const w of windows) {
        const targets = Array.from(corpus.ids.subarray(w.start, w.start + T))
        const inputs = [BOS_ID, ...targets.slice(0, -1)]
        const logits = referenceLogits(ref, inputs)
        logits.forEach((row, s) => {
          let max = Number.NEGATIVE_INFINITY
          for (const z of row) max = Math.max(max, z)
          let sum = 0
          for (const z of row) sum += Math.exp(z - max)
          refLoss += max + Math.log(sum) - (row[targets[s] as number] as number)
        })
        fastLoss += fast.forward(params, inputs, targets, 1, T)
      }
      const n = windows.length * T
      refLoss /= n
      fastLoss /= n
      expect(refLoss).toBeLessThanOrEqual(1.9)
      // The trainer's float32 forward pass agrees with the float64 reference.
      expect(Math.abs(fastLoss - refLoss) / refLoss).toBeLessThan(1e-4)
    },
  )
})
