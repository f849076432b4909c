import { describe, expect, it } from 'vitest'
import { segments } from '../src/engine/batch-segments.js'
import { KvPool } from '../src/engine/kv-pool.js'
import { KV_BLOCK, KvSlots } from '../src/engine/kv-slots.js'
import { chunkSizes, type QueuedStep, type QueuedTruncate, StepQueue } from '../src/engine/step-queue.js'
import { GenerationError } from '../src/errors.js'

// The slot cache and the batching policy, without a runtime: compaction keeps every generation's
// rows, views are the prefix a batch reads, segments and chunks follow their stated rules.

const HEADS = 2
const D = 3
const width = HEADS * D

/** One new row per call for the slot: its values encode (generation tag, position, element). */
function writeRow(pool: KvPool, slot: number, tag: number) {
  const at = pool.lengths[slot] as number
  const row = Float32Array.from({ length: width }, (_, e) => tag * 1000 + at * 10 + e)
  for (let l = 0; l < 2; l++)
    pool.write(
      slot,
      l,
      row,
      row.map((v) => -v),
      0,
      1,
    )
  pool.lengths[slot] = at + 1
}

/** Reads back position p of a slot from the layer's view, head by head. */
function readRow(pool: KvPool, slot: number, layer: number, p: number): number[] {
  const { keys } = pool.view(layer, slot, slot + 1)
  const out: number[] = []
  for (let h = 0; h < HEADS; h++) {
    for (let e = 0; e < D; e++) out.push(keys[(h * pool.capacity + p) * D + e] as number)
  }
  return out
}

describe('KvPool', () => {
  it('moves the last slot into a freed one, rows intact, and shrinks once it stood mostly empty', () => {
    const pool = new KvPool(2, HEADS, D, 8)
    const ids = ['a', 'b', 'c', 'd', 'e']
    ids.forEach((id, i) => {
      expect(pool.alloc(id)).toBe(i)
      for (let n = 0; n <= i; n++) writeRow(pool, i, i + 1)
    })
    expect(pool.slots).toBe(8)
    expect(pool.release(1)).toBe('e')
    expect(pool.owners).toEqual(['a', 'e', 'c', 'd'])
    expect(pool.lengths).toEqual([1, 5, 3, 4])
    for (let p = 0; p < 5; p++) {
      expect(readRow(pool, 1, 1, p)).toEqual(Array.from({ length: width }, (_, e) => 5000 + p * 10 + e))
    }
    expect(pool.release(3)).toBeUndefined()
    expect(pool.release(2)).toBeUndefined()
    // Two of eight slots used, but five were since the last trim: kept, then halved.
    expect(pool.slots).toBe(8)
    pool.trim()
    expect(pool.slots).toBe(8)
    pool.trim()
    expect(pool.slots).toBe(4)
    expect(readRow(pool, 1, 0, 4)).toEqual(Array.from({ length: width }, (_, e) => 5040 + e))
    pool.release(0)
    pool.release(0)
    expect(pool.used).toBe(0)
    expect(pool.slots).toBe(4)
    pool.trim()
    pool.trim()
    expect(pool.bytes).toBe(0)
    // A slot used between two trims keeps its room at the next.
    pool.alloc('f')
    pool.release(0)
    pool.trim()
    expect(pool.slots).toBe(1)
    pool.trim()
    expect(pool.slots).toBe(0)
  })

  it('swaps two slots with every position either holds, in every layer', () => {
    const pool = new KvPool(2, HEADS, D, 8)
    for (const [i, id] of ['a', 'b', 'c'].entries()) {
      pool.alloc(id)
      for (let n = 0; n <= 2 * i; n++) writeRow(pool, i, i + 1)
    }
    pool.swap(0, 2)
    expect(pool.owners).toEqual(['c', 'b', 'a'])
    expect(pool.lengths).toEqual([5, 3, 1])
    for (const layer of [0, 1]) {
      for (let p = 0; p < 5; p++) {
        expect(readRow(pool, 0, layer, p)).toEqual(Array.from({ length: width }, (_, e) => 3000 + p * 10 + e))
      }
      expect(readRow(pool, 2, layer, 0)).toEqual(Array.from({ length: width }, (_, e) => 1000 + e))
      expect(readRow(pool, 1, layer, 2)).toEqual(Array.from({ length: width }, (_, e) => 2020 + e))
    }
    // Values too (the negated rows), and a slot swapped with itself is unchanged.
    pool.swap(1, 1)
    expect(pool.view(1, 2, 3).values[0]).toBe(-1000)
  })

  it('keeps its minimum of slots, so a single row always has a padding neighbour', () => {
    const pool = new KvPool(1, HEADS, D, 8, 2)
    pool.alloc('a')
    expect(pool.slots).toBe(2)
    pool.release(0)
    pool.trim()
    pool.trim()
    expect(pool.slots).toBe(2)
  })
})

describe('KvSlots', () => {
  const init = { layers: 2, kvHeads: HEADS, headDim: D, maxContext: 1000 }

  it('moves a generation up a tier with its rows, and keeps places right as others leave', () => {
    const kv = new KvSlots(init)
    for (const id of ['a', 'b', 'c']) kv.reserve(id, 10)
    const { pool, slot } = kv.place('b')
    for (let i = 0; i < 10; i++) writeRow(pool, slot, 2)
    kv.reserve('b', KV_BLOCK + 1)
    const moved = kv.place('b')
    expect(moved.pool.capacity).toBe(2 * KV_BLOCK)
    expect(kv.length('b')).toBe(10)
    expect(readRow(moved.pool, moved.slot, 1, 9)).toEqual(Array.from({ length: width }, (_, e) => 2090 + e))
    // 'c' took b's old slot when b left the tier.
    expect(kv.place('c').slot).toBe(1)
    kv.end('a')
    expect(kv.place('c').slot).toBe(0)
    kv.truncate('b', 4)
    expect(kv.length('b')).toBe(4)
    expect(kv.size).toBe(2)
  })

  it('gathers generations onto consecutive slots with the fewest swaps, rows and places intact', () => {
    const kv = new KvSlots(init)
    const ids = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']
    for (const [i, id] of ids.entries()) {
      kv.reserve(id, 10)
      for (let n = 0; n <= i; n++) writeRow(kv.place(id).pool, i, i + 1)
    }
    // Alternate halves, as a two-stage pipeline leaves them: a c e g, then b d f h.
    expect(kv.gather(['a', 'c', 'e', 'g'])).toBe(2)
    const slotOf = (id: string) => kv.place(id).slot
    const slots = ['a', 'c', 'e', 'g'].map(slotOf).sort((x, y) => x - y)
    expect(slots).toEqual([
      slots[0],
      (slots[0] as number) + 1,
      (slots[0] as number) + 2,
      (slots[0] as number) + 3,
    ])
    // The other half is gathered by the same swaps.
    expect(kv.gather(['b', 'd', 'f', 'h'])).toBe(0)
    for (const [i, id] of ids.entries()) {
      const { pool, slot } = kv.place(id)
      expect(pool.owners[slot]).toBe(id)
      expect(kv.length(id)).toBe(i + 1)
      expect(readRow(pool, slot, 1, i)).toEqual(
        Array.from({ length: width }, (_, e) => (i + 1) * 1000 + i * 10 + e),
      )
    }
    expect(kv.gather(['a'])).toBe(0)
    kv.reserve('z', 40)
    expect(() => kv.gather(['a', 'z'])).toThrow(GenerationError)
  })

  it('caps the last tier at the context and refuses to go past it', () => {
    const kv = new KvSlots(init)
    kv.reserve('a', 999)
    expect(kv.place('a').pool.capacity).toBe(1000)
    expect(() => kv.reserve('a', 1001)).toThrow(GenerationError)
  })
})

describe('segments', () => {
  const rows = (...slots: number[]) => slots.map((slot) => ({ row: { slot } }))
  const shape = (segs: ReturnType<typeof segments>) => segs.map((s) => [s.lo, s.hi, s.rows.length])
  const cases: Array<[string, number[], Parameters<typeof segments>[1], number[][]]> = [
    ['consecutive', [0, 1, 2, 3], { maxBatch: 64, maxGap: 2, padSingle: false, slots: 8 }, [[0, 4, 4]]],
    [
      'small gaps are padded',
      [0, 2, 5],
      { maxBatch: 64, maxGap: 2, padSingle: false, slots: 8 },
      [[0, 6, 3]],
    ],
    [
      'a wide gap splits',
      [0, 1, 6],
      { maxBatch: 64, maxGap: 2, padSingle: false, slots: 8 },
      [
        [0, 2, 2],
        [6, 7, 1],
      ],
    ],
    [
      'a wider gap is padded while padding stays within the rows',
      [0, 1, 5],
      { maxBatch: 64, maxGap: 2, padSingle: false, slots: 8 },
      [[0, 6, 3]],
    ],
    [
      'one half of interleaved generations runs once',
      [0, 2, 4, 6, 8, 10],
      { maxBatch: 64, maxGap: 0, padSingle: false, slots: 12 },
      [[0, 11, 6]],
    ],
    [
      'rows far from the rest run apart',
      [0, 1, 2, 20, 21],
      { maxBatch: 64, maxGap: 2, padSingle: false, slots: 24 },
      [
        [0, 3, 3],
        [20, 22, 2],
      ],
    ],
    [
      'merging stops at maxBatch',
      [0, 2, 4, 6],
      { maxBatch: 4, maxGap: 0, padSingle: false, slots: 8 },
      [
        [0, 3, 2],
        [4, 7, 2],
      ],
    ],
    [
      'maxBatch splits',
      [0, 1, 2, 3, 4],
      { maxBatch: 2, maxGap: 2, padSingle: false, slots: 8 },
      [
        [0, 2, 2],
        [2, 4, 2],
        [4, 5, 1],
      ],
    ],
    [
      'one generation per run',
      [0, 1],
      { maxBatch: 1, maxGap: 2, padSingle: true, slots: 2 },
      [
        [0, 1, 1],
        [1, 2, 1],
      ],
    ],
    [
      'a single row gets the next slot',
      [3],
      { maxBatch: 64, maxGap: 2, padSingle: true, slots: 8 },
      [[3, 5, 1]],
    ],
    [
      'or the one before, at the end',
      [1],
      { maxBatch: 64, maxGap: 2, padSingle: true, slots: 2 },
      [[0, 2, 1]],
    ],
  ]
  for (const [name, slots, opts, want] of cases) {
    it(name, () => expect(shape(segments(rows(...slots), opts))).toEqual(want))
  }
})

describe('chunkSizes', () => {
  it('splits evenly, never into a single row, and sums to the step', () => {
    for (const chunk of [4, 5, 8, 128]) {
      for (let n = 2; n <= 600; n++) {
        const sizes = chunkSizes(n, chunk)
        expect(sizes.reduce((a, b) => a + b, 0)).toBe(n)
        expect(Math.max(...sizes)).toBeLessThanOrEqual(chunk)
        expect(Math.min(...sizes)).toBeGreaterThanOrEqual(2)
      }
    }
    expect(chunkSizes(129, 128)).toEqual([65, 64])
  })
})

describe('StepQueue', () => {
  const step = (id: string, seqLen: number, signal?: AbortSignal) => {
    const s: QueuedStep & { settled?: string } = {
      kind: 'step',
      id,
      input: { seqLen, startPos: 0, tokens: new Array(seqLen).fill(1) },
      signal,
      done: 0,
      parts: [],
      resolve: () => {
        s.settled = 'ok'
      },
      reject: () => {
        s.settled = 'failed'
      },
    }
    return s
  }
  const truncate = (id: string, length: number): QueuedTruncate & { settled?: string } => {
    const t: QueuedTruncate & { settled?: string } = {
      kind: 'truncate',
      id,
      length,
      signal: undefined,
      resolve: () => {
        t.settled = 'ok'
      },
      reject: () => {
        t.settled = 'failed'
      },
    }
    return t
  }

  it("takes each generation's oldest work, applies truncates, and alternates prompts with decode", () => {
    const q = new StepQueue()
    const applied: string[] = []
    const a1 = step('a', 1)
    const a2 = step('a', 1)
    const b = step('b', 1)
    const t = truncate('c', 3)
    const c = step('c', 1)
    const p = step('p', 40)
    for (const w of [a1, a2, b, t, c, p]) q.push(w)
    const first = q.next((x) => applied.push(`${x.id}:${x.length}`), new Set())
    expect(applied).toEqual(['c:3'])
    expect(t.settled).toBe('ok')
    expect(first).toEqual({ kind: 'decode', steps: [a1, b, c] })
    // A prompt waits: the next tick is its chunk, even though decode steps are waiting too.
    expect(q.next(() => undefined, new Set())?.kind).toBe('chunk')
    expect(q.next(() => undefined, new Set())?.kind).toBe('decode')
    for (const s of [a1, b, c]) q.remove(s)
    // Busy generations are skipped; a2 is a's next step.
    expect(q.next(() => undefined, new Set(['p']))).toEqual({ kind: 'decode', steps: [a2] })
  })

  it('fails aborted work instead of running it, and everything on failAll', () => {
    const q = new StepQueue()
    const ac = new AbortController()
    const gone = step('x', 1, ac.signal)
    const kept = step('y', 1)
    q.push(gone)
    q.push(kept)
    ac.abort(new Error('cancelled'))
    expect(q.next(() => undefined, new Set())).toEqual({ kind: 'decode', steps: [kept] })
    expect(gone.settled).toBe('failed')
    q.failAll(new Error('closing'))
    expect(kept.settled).toBe('failed')
    expect(q.size).toBe(0)
  })
})
