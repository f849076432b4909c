/**
 * llama2.c's run.c, transcribed to TypeScript as the ground truth for the importers: its
 * forward pass (interleaved RoPE on pairs 2i, 2i+1, theta 10000, RMSNorm eps 1e-5) and its
 * tokenizer's encode and decode. Written from run.c, independently of the import code.
 */
import { argmax } from './numerics.js'

export interface Llama2cDims {
  dim: number
  hiddenDim: number
  nLayers: number
  nHeads: number
  nKvHeads: number
  vocabSize: number
  seqLen: number
}

/** Weights in llama2.c's layout: per-layer arrays are [out, in] row-major, q/k in Meta order. */
export interface Llama2cWeights {
  dims: Llama2cDims
  embed: Float32Array
  rmsAtt: Float32Array[]
  wq: Float32Array[]
  wk: Float32Array[]
  wv: Float32Array[]
  wo: Float32Array[]
  rmsFfn: Float32Array[]
  w1: Float32Array[]
  w2: Float32Array[]
  w3: Float32Array[]
  rmsFinal: Float32Array
  /** Absent: the classifier is the embedding (shared). */
  wcls?: Float32Array
}

/** run.c's Transformer with its KV cache; `forward(token, pos)` returns that position's logits. */
export class Llama2cRunner {
  private readonly keyCache: Float64Array[]
  private readonly valueCache: Float64Array[]

  constructor(private readonly w: Llama2cWeights) {
    const { nLayers, seqLen, dim, nHeads, nKvHeads } = w.dims
    const kvDim = (dim * nKvHeads) / nHeads
    this.keyCache = Array.from({ length: nLayers }, () => new Float64Array(seqLen * kvDim))
    this.valueCache = Array.from({ length: nLayers }, () => new Float64Array(seqLen * kvDim))
  }

  forward(token: number, pos: number): Float64Array {
    const { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize } = this.w.dims
    const headSize = dim / nHeads
    const kvDim = (dim * nKvHeads) / nHeads
    const kvMul = nHeads / nKvHeads
    const x = Float64Array.from(this.w.embed.subarray(token * dim, (token + 1) * dim))
    for (let l = 0; l < nLayers; l++) {
      const xb = rmsnorm(x, this.w.rmsAtt[l] as Float32Array)
      const q = matmul(this.w.wq[l] as Float32Array, xb, dim)
      const k = matmul(this.w.wk[l] as Float32Array, xb, kvDim)
      const v = matmul(this.w.wv[l] as Float32Array, xb, kvDim)
      for (let i = 0; i < dim; i += 2) {
        const headDim = i % headSize
        const freq = 1 / 10000 ** (headDim / headSize)
        const val = pos * freq
        const fcr = Math.cos(val)
        const fci = Math.sin(val)
        const rotn = i < kvDim ? 2 : 1
        for (let r = 0; r < rotn; r++) {
          const vec = r === 0 ? q : k
          const v0 = vec[i] as number
          const v1 = vec[i + 1] as number
          vec[i] = v0 * fcr - v1 * fci
          vec[i + 1] = v0 * fci + v1 * fcr
        }
      }
      ;(this.keyCache[l] as Float64Array).set(k, pos * kvDim)
      ;(this.valueCache[l] as Float64Array).set(v, pos * kvDim)
      const att = new Float64Array(dim)
      for (let h = 0; h < nHeads; h++) {
        const kvOff = Math.floor(h / kvMul) * headSize
        const scores = new Float64Array(pos + 1)
        for (let t = 0; t <= pos; t++) {
          let s = 0
          for (let i = 0; i < headSize; i++) {
            s +=
              (q[h * headSize + i] as number) *
              ((this.keyCache[l] as Float64Array)[t * kvDim + kvOff + i] as number)
          }
          scores[t] = s / Math.sqrt(headSize)
        }
        softmax(scores)
        for (let t = 0; t <= pos; t++) {
          for (let i = 0; i < headSize; i++) {
            att[h * headSize + i] =
              (att[h * headSize + i] as number) +
              (scores[t] as number) * ((this.valueCache[l] as Float64Array)[t * kvDim + kvOff + i] as number)
          }
        }
      }
      const attnOut = matmul(this.w.wo[l] as Float32Array, att, dim)
      for (let i = 0; i < dim; i++) x[i] = (x[i] as number) + (attnOut[i] as number)
      const xb2 = rmsnorm(x, this.w.rmsFfn[l] as Float32Array)
      const hb = matmul(this.w.w1[l] as Float32Array, xb2, hiddenDim)
      const hb2 = matmul(this.w.w3[l] as Float32Array, xb2, hiddenDim)
      for (let i = 0; i < hiddenDim; i++) {
        const g = hb[i] as number
        hb[i] = (g / (1 + Math.exp(-g))) * (hb2[i] as number)
      }
      const ffn = matmul(this.w.w2[l] as Float32Array, hb, dim)
      for (let i = 0; i < dim; i++) x[i] = (x[i] as number) + (ffn[i] as number)
    }
    const final = rmsnorm(x, this.w.rmsFinal)
    return matmul(this.w.wcls ?? this.w.embed, final, vocabSize)
  }
}

/** Greedy decoding as run.c's generate does it, but stopping at EOS (2) like Butterfly. */
export function llama2cGreedy(w: Llama2cWeights, prompt: readonly number[], steps: number): number[] {
  const runner = new Llama2cRunner(w)
  const out: number[] = []
  let token = prompt[0] as number
  for (let pos = 0; out.length < steps; pos++) {
    const logits = runner.forward(token, pos)
    if (pos + 1 < prompt.length) {
      token = prompt[pos + 1] as number
      continue
    }
    token = argmax(logits)
    out.push(token)
    if (token === 2) break
  }
  return out
}

function rmsnorm(x: Float64Array, w: Float32Array): Float64Array {
  let ss = 0
  for (const v of x) ss += v * v
  const inv = 1 / Math.sqrt(ss / x.length + 1e-5)
  return x.map((v, i) => (w[i] as number) * (inv * v))
}

function matmul(w: Float32Array, x: Float64Array, d: number): Float64Array {
  const n = x.length
  const out = new Float64Array(d)
  for (let i = 0; i < d; i++) {
    let s = 0
    for (let j = 0; j < n; j++) s += (w[i * n + j] as number) * (x[j] as number)
    out[i] = s
  }
  return out
}

function softmax(x: Float64Array): void {
  let max = Number.NEGATIVE_INFINITY
  for (const v of x) max = Math.max(max, v)
  let sum = 0
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.exp((x[i] as number) - max)
    sum += x[i] as number
  }
  for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) / sum
}

/**
 * run.c's Tokenizer over tokenizer.bin pieces as llama2.c spells them (spaces, "\n<s>\n").
 * encode: a dummy " " token when the text is non-empty, each UTF-8 code point as a piece or its
 * bytes at id byte + 3, then repeatedly merge the adjacent pair whose concatenation is in the
 * vocabulary with the highest score (the leftmost on ties, scores must beat -1e10).
 */
export class Llama2cTokenizerRef {
  private readonly lookup = new Map<string, number>()

  constructor(
    readonly pieces: readonly string[],
    readonly scores: readonly number[],
  ) {
    // run.c's bsearch over sorted pieces finds one of several equal ones; the tests have none.
    pieces.forEach((p, id) => {
      if (!this.lookup.has(p)) this.lookup.set(p, id)
    })
  }

  encode(text: string, bos: boolean): number[] {
    const tokens: number[] = bos ? [1] : []
    if (text !== '') tokens.push(this.lookup.get(' ') ?? -1)
    for (const cp of text) {
      const id = this.lookup.get(cp)
      if (id !== undefined) tokens.push(id)
      else for (const b of new TextEncoder().encode(cp)) tokens.push(b + 3)
    }
    for (;;) {
      let bestScore = -1e10
      let bestId = -1
      let bestIdx = -1
      for (let i = 0; i < tokens.length - 1; i++) {
        const id = this.lookup.get(
          (this.pieces[tokens[i] as number] as string) + (this.pieces[tokens[i + 1] as number] as string),
        )
        if (id !== undefined && (this.scores[id] as number) > bestScore) {
          bestScore = this.scores[id] as number
          bestId = id
          bestIdx = i
        }
      }
      if (bestIdx === -1) break
      tokens.splice(bestIdx, 2, bestId)
    }
    return tokens
  }

  /** Bytes run.c prints for `ids` (specials skipped), as text. */
  decode(ids: readonly number[]): string {
    const bytes: number[] = []
    let prev = -1
    for (const id of ids) {
      if (id === 1 || id === 2) {
        prev = id
        continue
      }
      let piece = this.pieces[id] as string
      if (prev === 1 && piece.startsWith(' ')) piece = piece.slice(1)
      const m = /^<0x([0-9A-Fa-f]{2})>/.exec(piece)
      if (m !== null) bytes.push(Number.parseInt(m[1] as string, 16))
      else bytes.push(...new TextEncoder().encode(piece))
      prev = id
    }
    return new TextDecoder().decode(Uint8Array.from(bytes))
  }
}
