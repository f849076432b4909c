/** Float buffers the kernels accept; training uses Float32Array, gradient checks Float64Array. */
export type Floats = Float32Array | Float64Array

/**
 * C[i, j] (+)= sum_p A[i, p] * B[j, p] for i < m, j < n, p < k: both operands are read along
 * contiguous rows (the "NT" form), so every product the model needs is this kernel after at
 * most a transpose. Row i of A starts at aOff + i * lda, row j of B at bOff + j * ldb, C[i, j]
 * lives at cOff + i * ldc + j. `accumulate` adds to C instead of overwriting it.
 *
 * 4x4 register tiles: each step of the inner loop loads 8 values and does 16 multiply-adds,
 * which is what lets scalar JavaScript reach a few GFLOP/s (a plain dot loop is about 1).
 */
export function gemmNT(
  A: Floats,
  aOff: number,
  lda: number,
  B: Floats,
  bOff: number,
  ldb: number,
  C: Floats,
  cOff: number,
  ldc: number,
  m: number,
  n: number,
  k: number,
  accumulate: boolean,
): void {
  const m4 = m - (m % 4)
  const n4 = n - (n % 4)
  for (let i = 0; i < m4; i += 4) {
    const a0 = aOff + i * lda
    const a1 = a0 + lda
    const a2 = a1 + lda
    const a3 = a2 + lda
    for (let j = 0; j < n4; j += 4) {
      const b0 = bOff + j * ldb
      const b1 = b0 + ldb
      const b2 = b1 + ldb
      const b3 = b2 + ldb
      let s00 = 0
      let s01 = 0
      let s02 = 0
      let s03 = 0
      let s10 = 0
      let s11 = 0
      let s12 = 0
      let s13 = 0
      let s20 = 0
      let s21 = 0
      let s22 = 0
      let s23 = 0
      let s30 = 0
      let s31 = 0
      let s32 = 0
      let s33 = 0
      for (let p = 0; p < k; p++) {
        const x0 = A[a0 + p] as number
        const x1 = A[a1 + p] as number
        const x2 = A[a2 + p] as number
        const x3 = A[a3 + p] as number
        let y = B[b0 + p] as number
        s00 += x0 * y
        s10 += x1 * y
        s20 += x2 * y
        s30 += x3 * y
        y = B[b1 + p] as number
        s01 += x0 * y
        s11 += x1 * y
        s21 += x2 * y
        s31 += x3 * y
        y = B[b2 + p] as number
        s02 += x0 * y
        s12 += x1 * y
        s22 += x2 * y
        s32 += x3 * y
        y = B[b3 + p] as number
        s03 += x0 * y
        s13 += x1 * y
        s23 += x2 * y
        s33 += x3 * y
      }
      let c = cOff + i * ldc + j
      if (accumulate) {
        C[c] = (C[c] as number) + s00
        C[c + 1] = (C[c + 1] as number) + s01
        C[c + 2] = (C[c + 2] as number) + s02
        C[c + 3] = (C[c + 3] as number) + s03
        c += ldc
        C[c] = (C[c] as number) + s10
        C[c + 1] = (C[c + 1] as number) + s11
        C[c + 2] = (C[c + 2] as number) + s12
        C[c + 3] = (C[c + 3] as number) + s13
        c += ldc
        C[c] = (C[c] as number) + s20
        C[c + 1] = (C[c + 1] as number) + s21
        C[c + 2] = (C[c + 2] as number) + s22
        C[c + 3] = (C[c + 3] as number) + s23
        c += ldc
        C[c] = (C[c] as number) + s30
        C[c + 1] = (C[c + 1] as number) + s31
        C[c + 2] = (C[c + 2] as number) + s32
        C[c + 3] = (C[c + 3] as number) + s33
      } else {
        C[c] = s00
        C[c + 1] = s01
        C[c + 2] = s02
        C[c + 3] = s03
        c += ldc
        C[c] = s10
        C[c + 1] = s11
        C[c + 2] = s12
        C[c + 3] = s13
        c += ldc
        C[c] = s20
        C[c + 1] = s21
        C[c + 2] = s22
        C[c + 3] = s23
        c += ldc
        C[c] = s30
        C[c + 1] = s31
        C[c + 2] = s32
        C[c + 3] = s33
      }
    }
    // Columns left over when n is not a multiple of 4.
    for (let r = i; r < i + 4; r++) {
      for (let j = n4; j < n; j++)
        dotInto(A, aOff + r * lda, B, bOff + j * ldb, C, cOff + r * ldc + j, k, accumulate)
    }
  }
  // Rows left over when m is not a multiple of 4.
  for (let r = m4; r < m; r++) {
    for (let j = 0; j < n; j++)
      dotInto(A, aOff + r * lda, B, bOff + j * ldb, C, cOff + r * ldc + j, k, accumulate)
  }
}

function dotInto(
  A: Floats,
  a: number,
  B: Floats,
  b: number,
  C: Floats,
  c: number,
  k: number,
  accumulate: boolean,
): void {
  let s = 0
  for (let p = 0; p < k; p++) s += (A[a + p] as number) * (B[b + p] as number)
  C[c] = accumulate ? (C[c] as number) + s : s
}

/** dst[j, i] = src[i, j] for a rows x cols block; row strides lds and ldd. */
export function transpose(
  src: Floats,
  sOff: number,
  lds: number,
  rows: number,
  cols: number,
  dst: Floats,
  dOff: number,
  ldd: number,
): void {
  for (let i = 0; i < rows; i++) {
    const s = sOff + i * lds
    for (let j = 0; j < cols; j++) dst[dOff + j * ldd + i] = src[s + j] as number
  }
}
