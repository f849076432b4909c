/** What each peer can hold, in layers, in each pipeline role, and how fast it runs them. */
export interface PeerLimits {
  /** Layer-steps per second (> 0). */
  readonly tps: Float64Array
  /** Most layers that fit in memory as stage 0 (with embeddings), as a middle stage, as the last
   * stage (with final norm and LM head), and as the only stage. */
  readonly first: Int32Array
  readonly mid: Int32Array
  readonly last: Int32Array
  readonly only: Int32Array
}

/** Peers of one stage count, in pipeline order, with the most layers each may take. */
export interface CoverChoice {
  readonly peers: number[]
  readonly caps: number[]
}

/** Largest n ≤ cap with n / tps ≤ t, computed with the same division a plan's bottleneck uses. */
export function layersWithin(t: number, tps: number, cap: number): number {
  let n = Math.min(cap, Math.floor(t * tps))
  while (n > 0 && n / tps > t) n--
  while (n < cap && (n + 1) / tps <= t) n++
  return n
}

/**
 * For a bottleneck t, the fewest stages that can cover every layer with no stage slower than t
 * and every stage within memory. Each peer's cap is min(layers it runs within t, layers its memory
 * holds in its role). The middle stages of the best k-stage cover are the peers with the largest
 * middle caps once the first and last peers are chosen, so the search is over (first, last) pairs:
 * for each first peer, the best last peer either sits inside the top middles (it then displaces
 * one, pulling in the next) or outside them, and prefix/suffix maxima (keeping the runner-up, in
 * case the best is the first peer itself) give both in O(1). That is O(P) per k after a counting
 * sort, and the best cover grows with k, so the fewest stages is a binary search over k.
 */
export class CoverSolver {
  private readonly limits: PeerLimits
  private readonly numLayers: number
  private n = 0
  private onlyPeer = -1
  private readonly capMid: Int32Array
  private readonly capFirst: Int32Array
  private readonly capLast: Int32Array
  private readonly bucket: Int32Array
  // By rank (middle cap descending, then peer index).
  private readonly ord: Int32Array
  private readonly c: Float64Array
  private readonly a: Float64Array
  private readonly b: Float64Array
  private readonly pre: Float64Array
  // Best and runner-up of (b - c) over ranks < j, and of b over ranks >= j.
  private readonly pv1: Float64Array
  private readonly pv2: Float64Array
  private readonly pi1: Int32Array
  private readonly pi2: Int32Array
  private readonly sv1: Float64Array
  private readonly sv2: Float64Array
  private readonly si1: Int32Array
  private readonly si2: Int32Array

  constructor(limits: PeerLimits, numLayers: number) {
    this.limits = limits
    this.numLayers = numLayers
    const p = limits.tps.length
    this.capMid = new Int32Array(p)
    this.capFirst = new Int32Array(p)
    this.capLast = new Int32Array(p)
    this.bucket = new Int32Array(numLayers + 1)
    this.ord = new Int32Array(p)
    this.c = new Float64Array(p)
    this.a = new Float64Array(p)
    this.b = new Float64Array(p)
    this.pre = new Float64Array(p + 1)
    this.pv1 = new Float64Array(p + 1)
    this.pv2 = new Float64Array(p + 1)
    this.pi1 = new Int32Array(p + 1)
    this.pi2 = new Int32Array(p + 1)
    this.sv1 = new Float64Array(p + 1)
    this.sv2 = new Float64Array(p + 1)
    this.si1 = new Int32Array(p + 1)
    this.si2 = new Int32Array(p + 1)
  }

  /** Computes every peer's caps for bottleneck t; later calls answer for this t. */
  prepare(t: number): void {
    const { tps, first, mid, last, only } = this.limits
    const L = this.numLayers
    const { capMid, capFirst, capLast, bucket, ord, c, a, b, pre } = this
    bucket.fill(0)
    this.onlyPeer = -1
    let n = 0
    for (let p = 0; p < tps.length; p++) {
      const comp = layersWithin(t, tps[p] as number, L)
      const cm = Math.min(comp, mid[p] as number)
      capMid[p] = cm
      if (cm < 1) continue
      capFirst[p] = Math.min(comp, first[p] as number)
      capLast[p] = Math.min(comp, last[p] as number)
      if (this.onlyPeer < 0 && Math.min(comp, only[p] as number) >= L) this.onlyPeer = p
      bucket[cm] = (bucket[cm] as number) + 1
      n++
    }
    this.n = n
    // Counting sort, descending cap, ties in peer order.
    let pos = 0
    for (let cap = L; cap >= 1; cap--) {
      const count = bucket[cap] as number
      bucket[cap] = pos
      pos += count
    }
    for (let p = 0; p < tps.length; p++) {
      const cm = capMid[p] as number
      if (cm < 1) continue
      const r = bucket[cm] as number
      bucket[cm] = r + 1
      ord[r] = p
      c[r] = cm
      const cf = capFirst[p] as number
      const cl = capLast[p] as number
      a[r] = cf >= 1 ? cf : Number.NEGATIVE_INFINITY
      b[r] = cl >= 1 ? cl : Number.NEGATIVE_INFINITY
    }
    pre[0] = 0
    for (let r = 0; r < n; r++) pre[r + 1] = (pre[r] as number) + (c[r] as number)
    this.prefixMaxima()
    this.suffixMaxima()
  }

  private prefixMaxima(): void {
    const { pv1, pv2, pi1, pi2, b, c } = this
    let v1 = Number.NEGATIVE_INFINITY
    let v2 = Number.NEGATIVE_INFINITY
    let i1 = -1
    let i2 = -1
    for (let r = 0; r <= this.n; r++) {
      pv1[r] = v1
      pv2[r] = v2
      pi1[r] = i1
      pi2[r] = i2
      if (r === this.n) break
      const d = (b[r] as number) - (c[r] as number)
      if (d > v1) {
        v2 = v1
        i2 = i1
        v1 = d
        i1 = r
      } else if (d > v2) {
        v2 = d
        i2 = r
      }
    }
  }

  private suffixMaxima(): void {
    const { sv1, sv2, si1, si2, b } = this
    let v1 = Number.NEGATIVE_INFINITY
    let v2 = Number.NEGATIVE_INFINITY
    let i1 = -1
    let i2 = -1
    for (let r = this.n; r >= 0; r--) {
      if (r < this.n) {
        const v = b[r] as number
        if (v >= v1) {
          v2 = v1
          i2 = i1
          v1 = v
          i1 = r
        } else if (v >= v2) {
          v2 = v
          i2 = r
        }
      }
      sv1[r] = v1
      sv2[r] = v2
      si1[r] = i1
      si2[r] = i2
    }
  }

  /** Sum of the top j middle caps with rank `skip` left out. */
  private topWithout(skip: number, j: number): number {
    return skip >= j ? (this.pre[j] as number) : (this.pre[j + 1] as number) - (this.c[skip] as number)
  }

  /** Most layers k stages can cover (2 ≤ k ≤ peers with a cap), and the ranks of its first and last peers. */
  private maxCover(k: number): { total: number; rf: number; rl: number } {
    const m = k - 2
    let total = Number.NEGATIVE_INFINITY
    let bf = -1
    let bl = -1
    for (let rf = 0; rf < this.n; rf++) {
      const af = this.a[rf] as number
      if (af === Number.NEGATIVE_INFINITY) continue
      const end = rf >= m ? m : m + 1
      const useFirstIn = this.pi1[end] !== rf
      const inRank = useFirstIn ? (this.pi1[end] as number) : (this.pi2[end] as number)
      if (inRank >= 0) {
        const v =
          af +
          (useFirstIn ? (this.pv1[end] as number) : (this.pv2[end] as number)) +
          this.topWithout(rf, m + 1)
        if (v > total) {
          total = v
          bf = rf
          bl = inRank
        }
      }
      const useFirstOut = this.si1[end] !== rf
      const outRank = useFirstOut ? (this.si1[end] as number) : (this.si2[end] as number)
      if (outRank >= 0) {
        const v =
          af + (useFirstOut ? (this.sv1[end] as number) : (this.sv2[end] as number)) + this.topWithout(rf, m)
        if (v > total) {
          total = v
          bf = rf
          bl = outRank
        }
      }
    }
    return { total, rf: bf, rl: bl }
  }

  /** Fewest stages that cover every layer within the prepared bottleneck; Infinity if none. */
  minStages(): number {
    if (this.onlyPeer >= 0) return 1
    const hi = Math.min(this.n, this.numLayers)
    if (hi < 2 || this.maxCover(hi).total < this.numLayers) return Number.POSITIVE_INFINITY
    let lo = 2
    let top = hi
    while (lo < top) {
      const k = (lo + top) >> 1
      if (this.maxCover(k).total >= this.numLayers) top = k
      else lo = k + 1
    }
    return lo
  }

  /** The peers of a k-stage cover (k from minStages) in pipeline order, middles in peer order. */
  choose(k: number): CoverChoice {
    if (k === 1) return { peers: [this.onlyPeer], caps: [this.numLayers] }
    const { rf, rl } = this.maxCover(k)
    const mids: number[] = []
    for (let r = 0; r < this.n && mids.length < k - 2; r++) if (r !== rf && r !== rl) mids.push(r)
    mids.sort((x, y) => (this.ord[x] as number) - (this.ord[y] as number))
    const ranks = [rf, ...mids, rl]
    return {
      peers: ranks.map((r) => this.ord[r] as number),
      caps: ranks.map(
        (r, i) => (i === 0 ? this.a[r] : i === ranks.length - 1 ? this.b[r] : this.c[r]) as number,
      ),
    }
  }
}
