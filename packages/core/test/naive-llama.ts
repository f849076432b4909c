import type { ModelConfig } from '../src/model/model-config.js'
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, layerWeightNames } from '../src/model/weight-names.js'

/**
 * Whole-sequence forward written the way the Hugging Face code reads: no cache, full-width
 * cos/sin computed from scratch, rotate_half by concatenation, repeat_kv by expanding the
 * kv heads, an explicit causal mask. Returns the last position's logits.
 */
export function naiveLogits(c: ModelConfig, w: ReadonlyMap<string, Float32Array>, ids: number[]): number[] {
  const get = (name: string) => Array.from(w.get(name) as Float32Array)
  const matrix = (name: string, cols: number) => {
    const flat = get(name)
    return Array.from({ length: flat.length / cols }, (_, r) => flat.slice(r * cols, (r + 1) * cols))
  }
  const linear = (m: number[][], x: number[], b?: number[]) =>
    m.map((row, r) => row.reduce((acc, wv, i) => acc + wv * (x[i] as number), 0) + (b?.[r] ?? 0))
  const norm = (x: number[], g: number[]) => {
    const rms = Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length + c.rmsNormEps)
    return x.map((v, i) => (v / rms) * (g[i] as number))
  }
  const d = c.headDim
  const invFreq = Array.from({ length: d / 2 }, (_, i) => 1 / c.ropeTheta ** ((2 * i) / d))
  const rope = (x: number[], pos: number) => {
    const freqs = [...invFreq, ...invFreq].map((f) => f * pos)
    const rotated = [...x.slice(d / 2).map((v) => -v), ...x.slice(0, d / 2)]
    return x.map(
      (v, i) => v * Math.cos(freqs[i] as number) + (rotated[i] as number) * Math.sin(freqs[i] as number),
    )
  }
  const H = c.hiddenSize
  const embed = get(EMBED_TOKENS)
  let hs = ids.map((id) => embed.slice(id * H, (id + 1) * H))
  for (let l = 0; l < c.numLayers; l++) {
    const n = layerWeightNames(l)
    const bias = (name: string) => (c.attentionBias ? get(name) : undefined)
    const xn = hs.map((x) => norm(x, get(n.inputNorm)))
    const heads = (rows: number[][], count: number) =>
      Array.from({ length: count }, (_, h) => rows.map((r) => r.slice(h * d, (h + 1) * d)))
    const q = heads(
      xn.map((x) => linear(matrix(n.q, H), x, bias(n.qBias))),
      c.numHeads,
    )
    const k = heads(
      xn.map((x) => linear(matrix(n.k, H), x, bias(n.kBias))),
      c.numKvHeads,
    )
    const v = heads(
      xn.map((x) => linear(matrix(n.v, H), x, bias(n.vBias))),
      c.numKvHeads,
    )
    const group = c.numHeads / c.numKvHeads
    const kExpanded = k.flatMap((kh) => Array.from({ length: group }, () => kh))
    const vExpanded = v.flatMap((vh) => Array.from({ length: group }, () => vh))
    const headOut = q.map((qh, h) => {
      const qr = qh.map((x, t) => rope(x, t))
      const kr = (kExpanded[h] as number[][]).map((x, t) => rope(x, t))
      return qr.map((qt, t) => {
        const scores = kr.map((ks, s) =>
          s > t
            ? Number.NEGATIVE_INFINITY
            : ks.reduce((a, kv, i) => a + kv * (qt[i] as number), 0) / Math.sqrt(d),
        )
        const m = Math.max(...scores)
        const e = scores.map((s) => Math.exp(s - m))
        const z = e.reduce((a, b) => a + b, 0)
        return Array.from({ length: d }, (_, i) =>
          (vExpanded[h] as number[][]).reduce(
            (a, vs, s) => a + ((e[s] as number) / z) * (vs[i] as number),
            0,
          ),
        )
      })
    })
    const attn = hs.map((_, t) => headOut.flatMap((h) => h[t] as number[]))
    hs = hs.map((x, t) => {
      const h1 = linear(matrix(n.o, c.numHeads * d), attn[t] as number[]).map((o, i) => o + (x[i] as number))
      const x2 = norm(h1, get(n.postAttentionNorm))
      const g = linear(matrix(n.gate, H), x2)
      const u = linear(matrix(n.up, H), x2)
      const act = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * (u[i] as number))
      return linear(matrix(n.down, c.intermediateSize), act).map((o, i) => o + (h1[i] as number))
    })
  }
  const last = norm(hs.at(-1) as number[], get(FINAL_NORM))
  return linear(matrix(c.tieWordEmbeddings ? EMBED_TOKENS : LM_HEAD, H), last)
}
