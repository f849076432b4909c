import { describe, expect, it } from 'vitest'
import { concatFloats } from '../src/base/concat-floats.js'
import type { ModelConfig } from '../src/model/model-config.js'
import { ReferenceModel } from '../src/model/reference-model.js'
import { syntheticWeights } from '../src/model/synthetic.js'
import { EMBED_TOKENS, FINAL_NORM, layerWeightNames } from '../src/model/weight-names.js'
import { TOY_LLAMA } from './toy-config.js'

// The reference model's family traits, each checked against something that does not share its
// code: hand-derived values, an equivalent model of another family, or RoPE's invariance to
// shifting every position.

const llama: ModelConfig = TOY_LLAMA

const prompt = [1, 5, 9, 14, 3, 22, 30, 8, 17, 11]

function run(config: ModelConfig, weights: Map<string, Float32Array>, ids = prompt): Float32Array {
  const m = new ReferenceModel(config, weights)
  return m.forward(ids, m.createCache())
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let worst = 0
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(
      worst,
      Math.abs((a[i] as number) - (b[i] as number)) / Math.max(1, Math.abs(b[i] as number)),
    )
  }
  return worst
}

describe('fused projections (Phi-3)', () => {
  it('qkv_proj = [q; k; v] and gate_up_proj = [gate; up] give exactly the separate model', () => {
    const weights = syntheticWeights(llama, 3)
    const phi: ModelConfig = { ...llama, architecture: 'phi3' }
    const fused = new Map<string, Float32Array>()
    for (const [name, w] of weights) fused.set(name, w)
    for (let l = 0; l < llama.numLayers; l++) {
      const n = layerWeightNames(l)
      const get = (name: string) => weights.get(name) as Float32Array
      fused.set(n.qkv, concatFloats([get(n.q), get(n.k), get(n.v)]))
      fused.set(n.qkv.replace(/weight$/, 'bias'), concatFloats([get(n.qBias), get(n.kBias), get(n.vBias)]))
      fused.set(n.gateUp, concatFloats([get(n.gate), get(n.up)]))
    }
    expect(run(phi, fused)).toEqual(run(llama, weights))
  })
})

describe('sliding windows', () => {
  it('a window covering the whole sequence is full attention, exactly', () => {
    const weights = syntheticWeights(llama, 4)
    const mistral: ModelConfig = { ...llama, architecture: 'mistral', slidingWindow: prompt.length }
    expect(run(mistral, weights)).toEqual(run(llama, weights))
  })

  it('a one-layer query at p sees exactly keys p-W+1..p: the last W tokens run from position 0', () => {
    // RoPE scores depend only on relative positions, so with one layer the last position's output
    // under a window of W equals full attention over just the last W tokens (up to the float32
    // rounding of the cos/sin tables at the other positions).
    const one: ModelConfig = { ...llama, architecture: 'mistral', numLayers: 1 }
    const weights = syntheticWeights(one, 5)
    for (const w of [3, 4, 7]) {
      const windowed = run({ ...one, slidingWindow: w }, weights)
      const last = run(one, weights, prompt.slice(-w))
      expect(maxRelDiff(windowed, last)).toBeLessThan(1e-5)
      // An off-by-one window (W + 1 keys) is far off.
      const wider = run(one, weights, prompt.slice(-(w + 1)))
      expect(maxRelDiff(windowed, wider)).toBeGreaterThan(1e-3)
    }
  })

  it('Gemma 3 layer types: only the sliding layers are windowed', () => {
    const gemma: ModelConfig = {
      ...llama,
      architecture: 'gemma3',
      tieWordEmbeddings: true,
      attentionBias: false,
      slidingWindow: 3,
      layerTypes: ['full', 'full'],
      localRopeTheta: 10000,
    }
    const weights = syntheticWeights(gemma, 6)
    const { slidingWindow: _w, layerTypes: _t, ...noWindow } = gemma
    expect(run(gemma, weights)).toEqual(run(noWindow, weights))
    expect(
      maxRelDiff(run({ ...gemma, layerTypes: ['full', 'sliding'] }, weights), run(noWindow, weights)),
    ).toBeGreaterThan(1e-3)
  })
})

describe('Gemma 3 arithmetic', () => {
  it('matches a hand-derived one-layer model on one token (sqrt(H) embeddings, 1+w norms, sandwich norms, GeGLU)', () => {
    const eps = 1e-6
    const config: ModelConfig = {
      architecture: 'gemma3',
      hiddenSize: 4,
      numLayers: 1,
      numHeads: 1,
      numKvHeads: 1,
      headDim: 4,
      intermediateSize: 2,
      vocabSize: 3,
      ropeTheta: 1e6,
      localRopeTheta: 10000,
      rmsNormEps: eps,
      tieWordEmbeddings: true,
      maxContext: 8,
      attentionBias: false,
      bosTokenId: 2,
      eosTokenId: 1,
    }
    const eye = (s: number) => [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1].map((v) => v * s)
    const n = layerWeightNames(0)
    const weights = new Map<string, number[]>([
      [EMBED_TOKENS, [0.5, -0.5, 0.5, -0.5, 1, 0, 0, 0, 0, 0, 1, 0]],
      [n.inputNorm, [0, 0, 0, 0]], // (1 + 0): plain normalisation
      [n.q, eye(0.3)], // one key at position 0: softmax weight 1 whatever q, k and their norms
      [n.k, eye(-0.7)],
      [n.qNorm, [0.1, 0.2, 0.3, 0.4]],
      [n.kNorm, [0.1, 0.2, 0.3, 0.4]],
      [n.v, eye(1)],
      [n.o, eye(3)],
      [n.postAttentionNorm, [1, 1, 1, 1]], // gain 2
      [n.preFeedforwardNorm, [0, 0, 0, 0]],
      [n.gate, [1, 0, 0, 0, 0, 1, 0, 0]],
      [n.up, [1, 0, 0, 0, 0, 0, 0, 1]],
      [n.down, [1, 0, 0, 1, 0, 0, 0, 0]],
      [n.postFeedforwardNorm, [-0.5, -0.5, -0.5, -0.5]], // gain 0.5
      [FINAL_NORM, [0, 1, 0, 0]],
    ])
    const m = new ReferenceModel(config, new Map([...weights].map(([k, v]) => [k, new Float32Array(v)])))

    const rms = (x: number[]) => Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length + eps)
    const gelu = (g: number) => 0.5 * g * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (g + 0.044715 * g ** 3)))
    const e = [0.5, -0.5, 0.5, -0.5].map((v) => v * Math.fround(Math.sqrt(4))) // [1, -1, 1, -1]
    // Attention of one token is its value: v = normed input; o triples it; the post norm renormalises
    // with gain 2 (3 drops out), and the residual adds the embedding.
    const normedIn = e.map((v) => v / rms(e))
    const attn = normedIn.map((v) => 3 * v)
    const h = e.map((v, i) => v + (2 * (attn[i] as number)) / rms(attn))
    const u = h.map((v) => v / rms(h))
    const act = [gelu(u[0] as number) * (u[0] as number), gelu(u[1] as number) * (u[3] as number)]
    const mlp = [act[0] as number, act[1] as number, 0, 0] // down routes the two channels to dims 0, 1
    const r = rms(mlp)
    const out = h.map((v, i) => Math.fround(v + (0.5 * (mlp[i] as number)) / r))
    const f = rms(out)
    const finalGain = [1, 2, 1, 1]
    const normed = out.map((v, i) => (v / f) * (finalGain[i] as number))
    // Tied head: logits are the unscaled embedding rows dotted with the normed state.
    const table = weights.get(EMBED_TOKENS) as number[]
    const expected = [0, 1, 2].map((t) => normed.reduce((a, v, i) => a + v * (table[t * 4 + i] as number), 0))

    const logits = m.forward([0], m.createCache())
    for (let i = 0; i < 3; i++)
      expect(Math.abs((logits[i] as number) - (expected[i] as number))).toBeLessThan(1e-6)
  })
})

describe('splitting stays exact for every family', () => {
  const families: ModelConfig[] = [
    { ...llama, architecture: 'phi3', numLayers: 3, rotaryDim: 6, slidingWindow: 4 },
    { ...llama, architecture: 'qwen3', numLayers: 3, headDim: 16, attentionBias: false },
    {
      ...llama,
      architecture: 'gemma3',
      numLayers: 3,
      tieWordEmbeddings: true,
      attentionBias: false,
      slidingWindow: 4,
      layerTypes: ['sliding', 'full', 'sliding'],
      localRopeTheta: 10000,
      queryPreAttnScalar: 6,
    },
  ]
  it.each(families.map((c) => [c.architecture, c] as const))(
    '%s: layers [0, 1) + [1, 3) = [0, 3)',
    (_, c) => {
      const m = new ReferenceModel(c, syntheticWeights(c, 7))
      const whole = m.runLayers(m.embed(prompt), prompt.length, 0, 0, 3, m.createCache())
      const cache = m.createCache()
      const first = m.runLayers(m.embed(prompt), prompt.length, 0, 0, 1, cache)
      expect(m.runLayers(first, prompt.length, 0, 1, 3, cache)).toEqual(whole)
    },
  )
})
