import { describe, expect, it } from 'vitest'
import { ModelConfigError, TensorError } from '../src/errors.js'
import { stageTensorNames } from '../src/mesh/worker-node.js'
import { modelConfigToJson } from '../src/model/model-config-json.js'
import { parseModelConfig } from '../src/model/parse-model-config.js'
import { ReferenceModel } from '../src/model/reference-model.js'
import { syntheticConfig, syntheticTensor } from '../src/model/synthetic.js'
import { EMBED_TOKENS, expectedWeightShapes, FINAL_NORM, LM_HEAD } from '../src/model/weight-names.js'
import { stageMemoryBytes } from '../src/placement/stage-memory.js'
import { dequantizeInt4, type Int4Weight, int4Shapes, quantizeInt4 } from '../src/quant/int4.js'
import { syntheticStoredWeights } from '../src/quant/synthetic-weights.js'
import {
  encodeLinearWeight,
  isInt4Weight,
  linearWeightSpecs,
  readDequantized,
  storedTensorDtypes,
  storedTensorNames,
  withInt4Quantization,
} from '../src/quant/weight-encoding.js'
import { calibrationTokens, referenceBoundaries } from '../src/verify/calibration-reference.js'
import { bytesSource } from '../src/weights/byte-source.js'
import { f16BitsToF32, f32ToF16Bits, toFloat32 } from '../src/weights/float16.js'
import { encodeSafetensors, SafetensorsReader } from '../src/weights/safetensors.js'

/** Seeded uniform values in [-scale, scale] (a tiny LCG; deterministic across runs). */
function randomWeights(count: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0
  const out = new Float32Array(count)
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale
  }
  return out
}

const level = (w: Int4Weight, r: number, c: number): number => {
  const b = Math.floor(c / w.blockSize)
  const j = c % w.blockSize
  const byte = w.qweight[(r * w.blocks + b) * (w.blockSize / 2) + (j >> 1)] as number
  return j & 1 ? byte >> 4 : byte & 15
}

describe('quantizeInt4 / dequantizeInt4', () => {
  it('packs two levels a byte, low nibble first, in [N, K/32, 16]', () => {
    // One row, one block: the extreme is -8 (scale 1), so each weight is its own level - 8.
    const w = Float32Array.from({ length: 32 }, (_, i) => (i === 0 ? -8 : (i % 16) - 8))
    const q = quantizeInt4(w, 1, 32)
    expect(q.scales[0]).toBe(1)
    expect(q.qweight.length).toBe(16)
    // Levels 0 (w=-8) and 1 (w=-7) share byte 0: 0x10.
    expect(q.qweight[0]).toBe(0x10)
    expect(q.qweight[1]).toBe(0x32)
    expect(Array.from(dequantizeInt4(q))).toEqual(Array.from(w))
  })

  it('maps each block extreme to level 0 exactly, with the sign in the scale', () => {
    const w = randomWeights(4 * 64, 1)
    w[5] = 3 // positive extreme of block 0 of row 0
    w[64 + 40] = -3 // negative extreme of block 1 of row 1
    const q = quantizeInt4(w, 4, 64)
    expect(q.scales[0]).toBe(f16BitsToF32(f32ToF16Bits(-3 / 8)))
    expect(level(q, 0, 5)).toBe(0)
    expect(q.scales[3]).toBe(f16BitsToF32(f32ToF16Bits(3 / 8)))
    expect(level(q, 1, 40)).toBe(0)
  })

  for (const [n, k, blockSize] of [
    [8, 64, 32],
    [5, 172, 32],
    [3, 100, 64],
    [2, 17, 16],
  ] as const) {
    it(`[${n}, ${k}] block ${blockSize}: error within half a step (a full step where the top level clips)`, () => {
      const w = randomWeights(n * k, n * 1000 + k, 0.3)
      const q = quantizeInt4(w, n, k, blockSize)
      expect(q.blocks).toBe(Math.ceil(k / blockSize))
      const d = dequantizeInt4(q)
      for (let r = 0; r < n; r++) {
        for (let c = 0; c < k; c++) {
          const s = Math.abs(q.scales[r * q.blocks + Math.floor(c / blockSize)] as number)
          const x = (w[r * k + c] as number) / (q.scales[r * q.blocks + Math.floor(c / blockSize)] as number)
          const bound = x > 7.5 ? s : s / 2
          expect(Math.abs((d[r * k + c] as number) - (w[r * k + c] as number))).toBeLessThanOrEqual(
            bound * (1 + 1e-3),
          )
        }
      }
    })

    it(`[${n}, ${k}] block ${blockSize}: quantising the dequantised weights gives the same bytes`, () => {
      const q = quantizeInt4(randomWeights(n * k, k, 2), n, k, blockSize)
      const again = quantizeInt4(dequantizeInt4(q), n, k, blockSize)
      expect(again.qweight).toEqual(q.qweight)
      expect(again.scales).toEqual(q.scales)
    })
  }

  it('round-trips exactly any weight already on the grid (F32 scales too)', () => {
    for (const scaleDtype of ['F16', 'F32'] as const) {
      const scale = scaleDtype === 'F16' ? 0.0625 : Math.fround(0.013)
      const levels = randomWeights(64, 9).map((u) => Math.floor((u + 1) * 8))
      levels[0] = 0
      levels[32] = 0
      const w = levels.map((l) => Math.fround((l - 8) * scale))
      const q = quantizeInt4(w, 2, 32, 32, { scaleDtype })
      expect(dequantizeInt4(q)).toEqual(w)
    }
  })

  it('pads a short last block with level 8 and a zero block with scale 0', () => {
    const w = new Float32Array(2 * 40)
    w.set(randomWeights(40, 3), 40)
    const q = quantizeInt4(w, 2, 40)
    expect(q.blocks).toBe(2)
    expect(Array.from(q.scales.subarray(0, 2))).toEqual([0, 0])
    expect(Array.from(q.qweight.subarray(0, 32))).toEqual(new Array(32).fill(0x88))
    // Row 1, block 1 holds 8 weights; its other 24 nibbles are padding at level 8.
    expect(Array.from(q.qweight.subarray(48 + 4, 64))).toEqual(new Array(12).fill(0x88))
    expect(Array.from(dequantizeInt4(q).subarray(0, 40))).toEqual(new Array(40).fill(0))
  })

  it('refuses bad input with stable codes', () => {
    const bad: Array<[string, () => unknown, string]> = [
      ['NaN weight', () => quantizeInt4(Float32Array.of(1, Number.NaN), 1, 2), 'ERR_TENSOR_VALUE'],
      [
        'infinite weight',
        () => quantizeInt4(Float32Array.of(Number.POSITIVE_INFINITY), 1, 1),
        'ERR_TENSOR_VALUE',
      ],
      ['scale beyond fp16', () => quantizeInt4(Float32Array.of(1e6), 1, 1), 'ERR_TENSOR_VALUE'],
      ['wrong length', () => quantizeInt4(new Float32Array(5), 2, 3), 'ERR_TENSOR_SHAPE'],
      ['not a Float32Array', () => quantizeInt4(new Float64Array(6) as never, 2, 3), 'ERR_TENSOR_SHAPE'],
      ['zero rows', () => quantizeInt4(new Float32Array(0), 0, 3), 'ERR_TENSOR_SHAPE'],
      ['fractional columns', () => quantizeInt4(new Float32Array(3), 1, 2.5), 'ERR_TENSOR_SHAPE'],
      ['block size 24', () => quantizeInt4(new Float32Array(32), 1, 32, 24), 'ERR_TENSOR_SHAPE'],
      [
        'unknown scale dtype',
        () => quantizeInt4(new Float32Array(1), 1, 1, 32, { scaleDtype: 'BF16' as never }),
        'ERR_TENSOR_DTYPE',
      ],
      ['huge matrix', () => int4Shapes(2 ** 20, 2 ** 20), 'ERR_TENSOR_SHAPE'],
      [
        'short qweight',
        () =>
          dequantizeInt4({
            n: 1,
            k: 32,
            blockSize: 32,
            blocks: 1,
            qweight: new Uint8Array(15),
            scales: new Float32Array(1),
          }),
        'ERR_TENSOR_SHAPE',
      ],
      [
        'scales of the wrong length',
        () =>
          dequantizeInt4({
            n: 2,
            k: 32,
            blockSize: 32,
            blocks: 1,
            qweight: new Uint8Array(32),
            scales: new Float32Array(1),
          }),
        'ERR_TENSOR_SHAPE',
      ],
    ]
    for (const [what, run, code] of bad) {
      let err: unknown
      try {
        run()
      } catch (e) {
        err = e
      }
      expect(err, what).toBeInstanceOf(TensorError)
      expect((err as TensorError).code, what).toBe(code)
    }
  })
})

describe('int4 model files', () => {
  const config = withInt4Quantization(syntheticConfig('tiny'))

  it('selects exactly the seven projections of each layer (and an untied head on request)', () => {
    const selected = [...expectedWeightShapes(config).keys()].filter((n) => isInt4Weight(config, n))
    expect(selected).toHaveLength(7 * config.numLayers)
    expect(selected.every((n) => /_proj\.weight$/.test(n))).toBe(true)
    expect(isInt4Weight(config, EMBED_TOKENS)).toBe(false)
    expect(isInt4Weight(syntheticConfig('tiny'), 'model.layers.0.mlp.up_proj.weight')).toBe(false)
    const small = syntheticConfig('small')
    expect(isInt4Weight(withInt4Quantization(small), LM_HEAD)).toBe(false)
    expect(isInt4Weight(withInt4Quantization(small, { lmHead: true }), LM_HEAD)).toBe(true)
    // q/k/v biases of qwen2 stay float.
    expect(isInt4Weight(withInt4Quantization(small), 'model.layers.0.self_attn.q_proj.bias')).toBe(false)
    expect(storedTensorNames(config, 'model.layers.1.self_attn.o_proj.weight')).toEqual([
      'model.layers.1.self_attn.o_proj.weight.qweight',
      'model.layers.1.self_attn.o_proj.weight.scales',
    ])
    expect(storedTensorDtypes('model.layers.1.self_attn.o_proj.weight.qweight')).toEqual(['U8'])
    expect(storedTensorDtypes(FINAL_NORM)).toEqual(['F32', 'F16', 'BF16'])
  })

  it('writes a valid safetensors file whose int4 entries read back to the dequantised weights', async () => {
    const entries = [...expectedWeightShapes(config)].flatMap(([name, shape]) =>
      encodeLinearWeight(
        name,
        syntheticTensor(config, name),
        shape,
        isInt4Weight(config, name) ? 'int4' : 'F16',
      ),
    )
    const specs = [...expectedWeightShapes(config)].flatMap(([name, shape]) =>
      linearWeightSpecs(name, shape, isInt4Weight(config, name) ? 'int4' : 'F16'),
    )
    expect(entries.map(({ name, dtype, shape }) => ({ name, dtype, shape }))).toEqual(specs)
    const reader = await SafetensorsReader.open(bytesSource('m.safetensors', encodeSafetensors(entries)))
    const down = 'model.layers.2.mlp.down_proj.weight'
    // K = 172 is not a multiple of 32: six blocks, the last one padded.
    expect(reader.info(`${down}.qweight`)).toMatchObject({ dtype: 'U8', shape: [64, 6, 16] })
    expect(reader.info(`${down}.scales`)).toMatchObject({ dtype: 'F16', shape: [64, 6] })
    expect(reader.has(down)).toBe(false)
    const fromFile = await readDequantized(config, (n, s) => reader.read(n, { shape: s }), down, [64, 172])
    expect(fromFile).toEqual(dequantizeInt4(quantizeInt4(syntheticTensor(config, down), 64, 172)))
    // The in-memory synthetic provider serves the same bytes as the file.
    const provider = syntheticStoredWeights(config, 'F16')
    for (const name of [`${down}.qweight`, `${down}.scales`, FINAL_NORM]) {
      const info = reader.info(name)
      expect((await provider(name, info.shape)).data).toEqual((await reader.read(name)).data)
    }
    await expect(provider(down, [64, 172])).rejects.toMatchObject({ code: 'ERR_MODEL_TENSOR_MISSING' })
  })

  it('names the tensor when int4 encoding fails', () => {
    expect(() => encodeLinearWeight('x.weight', new Float32Array(4), [4], 'int4')).toThrow(
      /tensor x\.weight: .*2-D/,
    )
    expect(() => encodeLinearWeight('y.weight', Float32Array.of(Number.NaN), [1, 1], 'int4')).toThrow(
      /tensor y\.weight: int4: weight \[0, 0\] is NaN/,
    )
    const t = encodeLinearWeight('z', Float32Array.of(1.5), [1], 'F16')[0]
    expect(t && toFloat32(t)[0]).toBe(1.5)
  })

  it('refuses int4 entries of the wrong dtype or shape, naming them', async () => {
    const name = 'model.layers.0.self_attn.q_proj.weight'
    const good = syntheticStoredWeights(config)
    const wrongDtype = async (n: string, s: readonly number[]) =>
      n.endsWith('.qweight')
        ? { dtype: 'I8' as const, shape: s, data: new Uint8Array(64 * 2 * 16) }
        : good(n, s)
    await expect(readDequantized(config, wrongDtype, name, [64, 64])).rejects.toThrow(
      /q_proj\.weight\.qweight: expected U8, got I8/,
    )
    const wrongShape = async (n: string, s: readonly number[]) =>
      n.endsWith('.scales')
        ? { dtype: 'F16' as const, shape: [64, 1], data: new Uint8Array(128) }
        : good(n, s)
    await expect(readDequantized(config, wrongShape, name, [64, 64])).rejects.toMatchObject({
      code: 'ERR_TENSOR_SHAPE',
    })
  })
})

describe('quantization_config', () => {
  const base = modelConfigToJson(syntheticConfig('small'))

  it('round-trips through config.json', () => {
    for (const c of [
      withInt4Quantization(syntheticConfig('small')),
      withInt4Quantization(syntheticConfig('small'), { lmHead: true, blockSize: 64 }),
    ]) {
      expect(parseModelConfig(modelConfigToJson(c))).toEqual(c)
    }
    expect(modelConfigToJson(withInt4Quantization(syntheticConfig('tiny'))).quantization_config).toEqual({
      quant_method: 'butterfly_int4',
      bits: 4,
      block_size: 32,
      symmetric: true,
      lm_head: false,
    })
    // Absent or null means float weights.
    expect(parseModelConfig({ ...base, quantization_config: null }).quantization).toBeUndefined()
  })

  it('refuses every other quantisation with a message naming the field', () => {
    const q = { quant_method: 'butterfly_int4', bits: 4, block_size: 32 }
    const bad: Array<[unknown, RegExp]> = [
      ['int4', /quantization_config must be an object/],
      [[q], /must be an object/],
      [{ ...q, quant_method: 'gptq' }, /quant_method "gptq" is unsupported/],
      [{ quant_method: 'awq', bits: 4 }, /"awq" is unsupported/],
      [{ ...q, bits: 8 }, /bits must be 4, got 8/],
      [{ ...q, block_size: 48 }, /block_size must be one of/],
      [{ ...q, block_size: '32' }, /block_size must be one of/],
      [{ ...q, symmetric: false }, /symmetric must be true/],
      [{ ...q, lm_head: 'yes' }, /lm_head must be a boolean/],
    ]
    for (const [value, message] of bad) {
      expect(() => parseModelConfig({ ...base, quantization_config: value }, 'cfg.json')).toThrow(
        ModelConfigError,
      )
      expect(() => parseModelConfig({ ...base, quantization_config: value }, 'cfg.json')).toThrow(message)
    }
  })
})

describe('stage memory of int4 models', () => {
  it('prices int4 projections at half a byte per weight plus a float32 scale per block', () => {
    const c = syntheticConfig('100m')
    const q = withInt4Quantization(c)
    const opts = { kvContext: 1, overheadBytes: 0 }
    const h = c.hiddenSize
    const f = c.intermediateSize
    const kvDim = c.numKvHeads * c.headDim
    const weights = 2 * h * h + 2 * kvDim * h + 3 * f * h
    const kv = 2 * kvDim * 4
    expect(stageMemoryBytes(c, 1, 2, opts)).toBe((weights + 2 * h) * 4 + kv)
    expect(stageMemoryBytes(q, 1, 2, opts)).toBe(weights / 2 + (weights / 32) * 4 + 2 * h * 4 + kv)
    // A layer costs well under a fifth of its fp32 price; the tied embedding table is unchanged.
    expect(stageMemoryBytes(q, 1, 2, opts) / stageMemoryBytes(c, 1, 2, opts)).toBeLessThan(0.2)
    expect(stageMemoryBytes(q, 0, 1, opts) - stageMemoryBytes(q, 1, 2, opts)).toBe(c.vocabSize * h * 4)
    // An int4 untied head on the last stage.
    const small = syntheticConfig('small')
    const head = withInt4Quantization(small, { lmHead: true })
    const last = (cfg: typeof small) => stageMemoryBytes(cfg, small.numLayers - 1, small.numLayers, opts)
    const mid = (cfg: typeof small) => stageMemoryBytes(cfg, 1, 2, opts)
    expect(last(head) - mid(head)).toBe(small.hiddenSize * 4 + small.vocabSize * 3 * (16 + 4))
  })
})

describe('int4 in the mesh paths', () => {
  const config = withInt4Quantization(syntheticConfig('small'), { lmHead: true })

  it("a stage downloads its projections' qweight and scales entries, and the stages cover the file", async () => {
    const stored = new Set<string>()
    for (const [start, end] of [
      [0, 2],
      [2, 5],
    ] as const) {
      const names = stageTensorNames(config, start, end)
      expect(names).not.toContain('model.layers.0.self_attn.q_proj.weight')
      for (const n of names) stored.add(n)
    }
    expect(stored.has('model.layers.0.self_attn.q_proj.weight.qweight')).toBe(true)
    expect(stored.has(`${LM_HEAD}.scales`)).toBe(true)
    const file = [...expectedWeightShapes(config)].flatMap(([name, shape]) =>
      linearWeightSpecs(name, shape, isInt4Weight(config, name) ? 'int4' : 'F16').map((s) => s.name),
    )
    expect([...stored].sort()).toEqual([...file].sort())
  })

  it('the calibration reference runs on the dequantised weights, layer by layer', async () => {
    const tokens = calibrationTokens(config)
    const boundaries = await referenceBoundaries(config, syntheticStoredWeights(config), tokens)
    const weights = new Map<string, Float32Array>()
    for (const [name, shape] of expectedWeightShapes(config)) {
      weights.set(name, await readDequantized(config, syntheticStoredWeights(config), name, shape))
    }
    const whole = new ReferenceModel(config, weights)
    const cache = whole.createCache()
    let x = whole.embed(tokens)
    for (let l = 0; l < config.numLayers; l++) {
      x = whole.runLayers(x, tokens.length, 0, l, l + 1, cache)
      expect(boundaries[l + 1]).toEqual(x)
    }
    // And those weights really are the quantised ones, not the float originals.
    const q = 'model.layers.1.mlp.gate_proj.weight'
    expect(weights.get(q)).not.toEqual(syntheticTensor(config, q))
  })
})
