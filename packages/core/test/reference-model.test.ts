import { describe, expect, it } from 'vitest'
import {
  GenerationError,
  GraphBuildError,
  ModelConfigError,
  ModelFileError,
  TensorError,
  TokenizerError,
} from '../src/errors.js'
import type { ModelConfig } from '../src/model/model-config.js'
import { ReferenceModel } from '../src/model/reference-model.js'
import { syntheticConfig, syntheticWeights } from '../src/model/synthetic.js'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, layerWeightNames } from '../src/model/weight-names.js'
import { naiveLogits } from './naive-llama.js'
import { TOY_LLAMA } from './toy-config.js'

// Tolerances. Prefill vs. stepwise and split vs. whole runs do the same float64 operations in
// the same order, so they should agree to 1e-9 relative (in practice exactly). Comparisons with
// the independent naive implementation below differ by float32 rounding of the RoPE tables and
// of the residual stream between layers, so they use 1e-5 on logits of magnitude ~1-10.
const SAME_MATH = 1e-9
const INDEPENDENT = 1e-5

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, relTol: number): void {
  expect(actual.length).toBe(expected.length)
  let worst = 0
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i] as number
    const e = expected[i] as number
    worst = Math.max(worst, Math.abs(a - e) / Math.max(1, Math.abs(e)))
  }
  expect(worst).toBeLessThanOrEqual(relTol)
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)))
  return worst
}

const base: ModelConfig = TOY_LLAMA

function model(config: ModelConfig, seed = 0): ReferenceModel {
  return new ReferenceModel(config, syntheticWeights(config, seed))
}

describe('ReferenceModel math', () => {
  it('matches a hand-derived 1-layer, 1-head model on a single token', () => {
    const eps = 1e-6
    const config: ModelConfig = {
      ...base,
      hiddenSize: 4,
      numLayers: 1,
      numHeads: 1,
      numKvHeads: 1,
      headDim: 4,
      intermediateSize: 2,
      vocabSize: 3,
      rmsNormEps: eps,
      maxContext: 8,
      attentionBias: false,
    }
    const eye = (scale: number) => [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1].map((v) => v * scale)
    const n = layerWeightNames(0)
    const weights = new Map<string, number[]>([
      [EMBED_TOKENS, [1, -1, 1, -1, 2, 0, 0, 0, 0, 0, 0, 0]],
      [n.inputNorm, [1, 1, 1, 1]],
      [n.q, eye(0.3)], // q and k cannot matter: one key at position 0 gets softmax weight 1
      [n.k, eye(-0.7)],
      [n.v, eye(1)],
      [n.o, eye(0.5)],
      [n.postAttentionNorm, [1, 1, 1, 1]],
      [n.gate, [1, 0, 0, 0, 0, 1, 0, 0]],
      [n.up, [1, 0, 0, 0, 0, 0, 0, 1]],
      [n.down, [1, 0, 0, 1, 0, 0, 0, 0]],
      [FINAL_NORM, [1, 2, 1, 1]],
      [LM_HEAD, [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1]],
    ])
    const m = new ReferenceModel(config, new Map([...weights].map(([k, v]) => [k, new Float32Array(v)])))

    // x = [1,-1,1,-1] has mean square 1, so the input norm scales by s; attention returns v = s*x,
    // o halves it: h1 = a*x. The post norm turns h1 into t*x. gate = [t, -t], up = [t, -t].
    const silu = (z: number) => z / (1 + Math.exp(-z))
    const s = 1 / Math.sqrt(1 + eps)
    const a = 1 + 0.5 * s
    const t = a / Math.sqrt(a * a + eps)
    // down routes the two MLP channels into dims 0 and 1; the residual stream is then rounded to float32.
    const h2 = [a + silu(t) * t, -a - silu(-t) * t, a, -a].map(Math.fround) // ~[2.23, -1.23, 1.5, -1.5]
    const r = Math.sqrt(h2.reduce((acc, v) => acc + v * v, 0) / 4 + eps)
    const expected = [
      (h2[0] as number) / r,
      (2 * (h2[1] as number)) / r,
      ((h2[2] as number) + (h2[3] as number)) / r,
    ]

    const logits = m.forward([0], m.createCache())
    expectClose(logits, expected, 1e-6)
    expect(logits[2]).toBe(0)

    // Same token again: both cached values are equal, so attention (whatever its weights) and
    // therefore the logits are unchanged at position 1.
    const cache = m.createCache()
    m.forward([0], cache)
    expectClose(m.forward([0], cache), expected, 1e-6)
  })

  it.each([
    ['GQA with q/k/v biases, untied head', base],
    [
      'multi-query, tied head, no biases',
      { ...base, numKvHeads: 1, tieWordEmbeddings: true, attentionBias: false },
    ],
    ['multi-head, 3 layers', { ...base, numKvHeads: 4, numLayers: 3 }],
  ])('matches an independent naive implementation: %s', (_label, config) => {
    const weights = syntheticWeights(config, 11)
    const m = new ReferenceModel(config, weights)
    const ids = [1, 5, 36, 0, 17, 17, 9, 2, 30, 4]
    expectClose(m.forward(ids, m.createCache()), naiveLogits(config, weights, ids), INDEPENDENT)
  })

  it('groups query heads onto kv heads as floor(head / group), like repeat_kv', () => {
    const gqa = { ...base, numHeads: 4, numKvHeads: 2 }
    const mha = { ...gqa, numKvHeads: 4 }
    const weights = syntheticWeights(gqa, 5)
    const d = gqa.headDim
    // An MHA model whose head h has the k/v weights of kv head map(h) behaves like the GQA model
    // exactly when map is the grouping the GQA model uses.
    const expand = (map: (h: number) => number) => {
      const out = new Map(weights)
      for (let l = 0; l < gqa.numLayers; l++) {
        const n = layerWeightNames(l)
        for (const [name, rowLen] of [
          [n.k, gqa.hiddenSize],
          [n.v, gqa.hiddenSize],
          [n.kBias, 1],
          [n.vBias, 1],
        ] as const) {
          const src = weights.get(name) as Float32Array
          const dst = new Float32Array(mha.numKvHeads * d * rowLen)
          for (let h = 0; h < mha.numHeads; h++) {
            dst.set(src.subarray(map(h) * d * rowLen, (map(h) + 1) * d * rowLen), h * d * rowLen)
          }
          out.set(name, dst)
        }
      }
      return out
    }
    const ids = [3, 14, 15, 9, 26, 5]
    const gqaLogits = new ReferenceModel(gqa, weights).forward(
      ids,
      new ReferenceModel(gqa, weights).createCache(),
    )
    const run = (w: Map<string, Float32Array>) => {
      const m = new ReferenceModel(mha, w)
      return m.forward(ids, m.createCache())
    }
    expectClose(run(expand((h) => Math.floor(h / 2))), gqaLogits, SAME_MATH)
    // The other plausible grouping (interleaved) must be distinguishable, or this test proves nothing.
    expect(maxAbsDiff(run(expand((h) => h % 2)), gqaLogits)).toBeGreaterThan(1e-3)
  })
})

describe('ReferenceModel caching and splitting', () => {
  const prompt = [1, 87, 104, 103, 35, 111, 117, 106, 102, 35, 119, 108]

  it.each(['tiny', 'small'])('%s: prefill of N tokens equals N single-token steps', (name) => {
    const m = model(syntheticConfig(name))
    const prefill = m.forward(prompt, m.createCache())
    const cache = m.createCache()
    let stepped: Float32Array = new Float32Array(0)
    for (const id of prompt) stepped = m.forward([id], cache)
    expect(cache.length).toBe(prompt.length)
    expectClose(stepped, prefill, SAME_MATH)

    // Mixed chunking: 5 + 1 + 6.
    const mixed = m.createCache()
    m.forward(prompt.slice(0, 5), mixed)
    m.forward(prompt.slice(5, 6), mixed)
    expectClose(m.forward(prompt.slice(6), mixed), prefill, SAME_MATH)
  })

  it.each(['tiny', 'small'])('%s: running layers in stages equals one call, at every split', (name) => {
    const config = syntheticConfig(name)
    const m = model(config)
    const L = config.numLayers
    const x = m.embed(prompt)
    const whole = m.runLayers(x, prompt.length, 0, 0, L, m.createCache())
    for (let split = 0; split <= L; split++) {
      // Separate caches, as two peers would hold.
      const first = m.createCache()
      const second = m.createCache()
      const mid = m.runLayers(x, prompt.length, 0, 0, split, first)
      const out = m.runLayers(mid, prompt.length, 0, split, L, second)
      expectClose(out, whole, SAME_MATH)
      // Then a decode step through the same split.
      const next = m.embed([42])
      const stepMid = m.runLayers(next, 1, prompt.length, 0, split, first)
      const stepOut = m.runLayers(stepMid, 1, prompt.length, split, L, second)
      const oneCache = m.createCache()
      m.forward(prompt, oneCache)
      expectClose(m.logits(stepOut, 1), m.forward([42], oneCache), SAME_MATH)
    }
    // Three stages on the odd-depth model.
    const cache = m.createCache()
    let h = x
    for (const [from, to] of [
      [0, 2],
      [2, 3],
      [3, L],
    ] as const) {
      h = m.runLayers(h, prompt.length, 0, from, to, cache)
    }
    expectClose(h, whole, SAME_MATH)
  })

  it('logits uses only the last position', () => {
    const m = model(syntheticConfig('tiny'))
    const h = m.runLayers(m.embed(prompt), prompt.length, 0, 0, 4, m.createCache())
    const lastOnly = h.slice((prompt.length - 1) * 64)
    expect(m.logits(h, prompt.length)).toEqual(m.logits(lastOnly, 1))
  })

  it('truncate lets a sequence be re-run from an earlier point', () => {
    const m = model(syntheticConfig('tiny'))
    const cache = m.createCache()
    const full = m.forward(prompt, cache)
    cache.truncate(7)
    expect(cache.length).toBe(7)
    expectClose(m.forward(prompt.slice(7), cache), full, SAME_MATH)
  })

  it('greedy decoding on tiny has clear top-1 margins and does not collapse to one token', () => {
    const m = model(syntheticConfig('tiny'))
    const cache = m.createCache()
    let logits = m.forward(prompt, cache)
    const margins: number[] = []
    const tokens: number[] = []
    for (let step = 0; step < 32; step++) {
      const order = [...logits.keys()].sort((a, b) => (logits[b] as number) - (logits[a] as number))
      margins.push((logits[order[0] as number] as number) - (logits[order[1] as number] as number))
      tokens.push(order[0] as number)
      logits = m.forward([order[0] as number], cache)
    }
    margins.sort((a, b) => a - b)
    expect(margins[0]).toBeGreaterThan(1e-3)
    expect(margins[16]).toBeGreaterThan(0.1)
    expect(new Set(tokens).size).toBeGreaterThanOrEqual(3)
  })
})

describe('ReferenceModel validation', () => {
  const tiny = syntheticConfig('tiny')
  const weights = syntheticWeights(tiny)
  const m = new ReferenceModel(tiny, weights)

  it('rejects a context overflow with ERR_CONTEXT_OVERFLOW', () => {
    const small = { ...base, maxContext: 4 }
    const sm = model(small)
    const cache = sm.createCache()
    sm.forward([1, 2, 3, 4], cache)
    expect(() => sm.forward([5], cache)).toThrow(expect.objectContaining({ code: 'ERR_CONTEXT_OVERFLOW' }))
    expect(() => sm.forward([1, 2, 3, 4, 5], sm.createCache())).toThrow(GenerationError)
    expect(cache.length).toBe(4) // a rejected step changes nothing
  })

  it('rejects steps out of order and foreign caches with ERR_STEP_ORDER', () => {
    const cache = m.createCache()
    m.forward([1, 2, 3], cache)
    const x = m.embed([4])
    expect(() => m.runLayers(x, 1, 2, 0, 4, cache)).toThrow(
      expect.objectContaining({ code: 'ERR_STEP_ORDER' }),
    )
    expect(() => m.runLayers(x, 1, 4, 0, 4, cache)).toThrow(
      expect.objectContaining({ code: 'ERR_STEP_ORDER' }),
    )
    expect(() => m.runLayers(x, 1, -1, 0, 4, cache)).toThrow(GenerationError)
    const other = model(syntheticConfig('small')).createCache()
    expect(() => m.runLayers(x, 1, 0, 0, 4, other)).toThrow(GenerationError)
    expect(() => m.runLayers(x, 1, 0, 0, 4, {} as never)).toThrow(GenerationError)
  })

  it.each([[[]], [[259]], [[-1]], [[1.5]], [[Number.NaN]], [[1, 2, 1e9]]])('rejects token ids %j', (ids) => {
    expect(() => m.forward(ids, m.createCache())).toThrow(ids.length === 0 ? TensorError : TokenizerError)
  })

  it('rejects malformed hidden states, lengths and layer ranges', () => {
    const cache = m.createCache()
    const x = m.embed([1, 2])
    expect(() => m.runLayers(x, 3, 0, 0, 4, cache)).toThrow(TensorError)
    expect(() => m.runLayers(x, 0, 0, 0, 4, cache)).toThrow(TensorError)
    expect(() => m.runLayers(new Float32Array(127), 2, 0, 0, 4, cache)).toThrow(TensorError)
    expect(() => m.runLayers(Array.from(x) as never, 2, 0, 0, 4, cache)).toThrow(TensorError)
    for (const [from, to] of [
      [-1, 2],
      [0, 5],
      [3, 2],
      [0.5, 2],
    ]) {
      expect(() => m.runLayers(x, 2, 0, from as number, to as number, cache)).toThrow(GraphBuildError)
    }
    expect(() => m.logits(x, 3)).toThrow(TensorError)
    expect(cache.length).toBe(0)
    expect(() => cache.truncate(-1)).toThrow(TensorError)
  })

  it('rejects missing or mis-sized weights', () => {
    const missing = new Map(weights)
    missing.delete('model.layers.2.mlp.up_proj.weight')
    expect(() => new ReferenceModel(tiny, missing)).toThrow(
      expect.objectContaining({
        code: 'ERR_MODEL_TENSOR_MISSING',
        tensor: 'model.layers.2.mlp.up_proj.weight',
      }),
    )
    const short = new Map(weights).set(FINAL_NORM, new Float32Array(63))
    expect(() => new ReferenceModel(tiny, short)).toThrow(ModelFileError)
    const wrongType = new Map(weights).set(FINAL_NORM, new Float64Array(64) as unknown as Float32Array)
    expect(() => new ReferenceModel(tiny, wrongType)).toThrow(ModelFileError)
  })

  it.each([
    ['heads not divisible by kv heads', { numHeads: 4, numKvHeads: 3 }],
    ['odd head dim', { headDim: 7 }],
    ['zero layers', { numLayers: 0 }],
    ['fractional hidden size', { hiddenSize: 32.5 }],
    ['zero context', { maxContext: 0 }],
    ['non-positive eps', { rmsNormEps: 0 }],
    ['NaN theta', { ropeTheta: Number.NaN }],
  ])('rejects a config with %s', (_label, patch) => {
    expect(() => new ReferenceModel({ ...base, ...patch }, new Map())).toThrow(ModelConfigError)
  })
})
