import { describe, expect, it } from 'vitest'
import type { TopKLogits } from '../src/base/top-k-logits.js'
import { type GeneratedToken, generate } from '../src/engine/generate.js'
import type {
  ConfirmResult,
  StageSession,
  StageStepInput,
  StageStepOutput,
} from '../src/engine/inference-backend.js'
import { Sampler } from '../src/engine/sampler.js'

/*
 * generate() against one fake last stage that verifies in windows: a deterministic "model" whose
 * next-token logits depend on the token fed, a leader that lies at chosen positions (a different
 * argmax), and a window check that finds those lies. No token a rollback takes back may reach
 * the consumer, the tokens must be the honest ones, and a seeded sample must be what a run
 * without lies draws.
 */

const VOCAB = 16

/** Honest logits after feeding `token` at `position`. */
function honest(token: number, position: number): TopKLogits {
  const values: number[] = []
  for (let i = 0; i < VOCAB; i++) values.push(Math.sin(token * 7.1 + position * 1.3 + i * 2.9) * 3)
  const ids = [...values.keys()].sort((a, b) => (values[b] as number) - (values[a] as number))
  const lse = Math.log(values.reduce((s, v) => s + Math.exp(v), 0))
  return {
    values: Float32Array.from(ids, (i) => values[i] as number),
    ids: Int32Array.from(ids),
    logSumExp: lse,
  }
}

/** The same candidates with the top two swapped in name: a well-formed lie. */
function lie(t: TopKLogits): TopKLogits {
  const ids = Int32Array.from(t.ids)
  ids[0] = t.ids[1] as number
  ids[1] = t.ids[0] as number
  return { ...t, ids }
}

class WindowedFake implements StageSession {
  readonly layerStart = 0
  readonly layerEnd = 1
  readonly isFirst = true
  readonly isLast = true
  readonly truncations: number[] = []
  private outs: Array<{ pos: number; lied: boolean }> = []
  private confirmed = 0
  private end = 0
  private readonly lied = new Set<number>()

  constructor(
    /** Positions the leader lies at, the first time each is computed. */
    private readonly lies: ReadonlySet<number>,
    private readonly window: number,
  ) {}

  get activeGenerations(): number {
    return 1
  }

  async step(_id: string, input: StageStepInput): Promise<StageStepOutput> {
    if (input.startPos !== this.end) throw new Error(`step at ${input.startPos}, expected ${this.end}`)
    const tokens = input.tokens as readonly number[]
    this.end += input.seqLen
    const pos = this.end - 1
    const out = honest(tokens[tokens.length - 1] as number, pos)
    const lying = this.lies.has(pos) && !this.lied.has(pos)
    if (lying) this.lied.add(pos)
    // A prefill is voted, so it is confirmed at once; decode steps run ahead.
    if (input.seqLen > 1 || input.startPos === 0) this.confirmed = this.end
    else this.outs.push({ pos, lied: lying })
    return { topk: lying ? lie(out) : out }
  }

  confirmedLength(): number {
    return this.confirmed
  }

  confirmDue(): boolean {
    return this.end - this.confirmed >= this.window
  }

  async confirm(): Promise<ConfirmResult> {
    const bad = this.outs.find((o) => o.lied)
    if (bad === undefined) {
      this.confirmed = this.end
      this.outs = []
      return { ok: true }
    }
    this.confirmed = bad.pos
    return { ok: false, rollbackTo: bad.pos }
  }

  async truncate(_id: string, length: number): Promise<void> {
    this.truncations.push(length)
    this.end = Math.min(this.end, length)
    this.confirmed = Math.min(this.confirmed, length)
    this.outs = this.outs.filter((o) => o.pos < length)
  }

  endGeneration(): void {}
  async dispose(): Promise<void> {}
}

async function collect(stage: StageSession, temperature: number, maxTokens = 40): Promise<GeneratedToken[]> {
  const out: GeneratedToken[] = []
  const pipeline = { stages: [stage], maxContext: 256 }
  for await (const t of generate(pipeline, {
    promptIds: [1, 2, 3, 4],
    maxTokens,
    sampling: temperature === 0 ? { temperature: 0 } : { temperature, seed: 7 },
  }))
    out.push(t)
  return out
}

describe('generate with windowed verification', () => {
  for (const temperature of [0, 0.8]) {
    it(`releases only confirmed tokens; lies are rolled back and redrawn (temperature ${temperature})`, async () => {
      const reference = (await collect(new WindowedFake(new Set(), 4), temperature)).map((t) => t.id)
      expect(reference).toHaveLength(40)
      const lies = new Set([6, 9, 10, 25])
      const lying = new WindowedFake(lies, 4)
      const tokens = await collect(lying, temperature)
      expect(tokens.map((t) => t.id)).toEqual(reference)
      // Every rollback went to a lie's position (a lie computed ahead and rolled back with an
      // earlier one is not told again), in order.
      expect(lying.truncations[0]).toBe(6)
      expect(lying.truncations).toContain(25)
      for (const q of lying.truncations) expect(lies.has(q)).toBe(true)
      expect([...lying.truncations].sort((a, b) => a - b)).toEqual(lying.truncations)
      expect(tokens.at(-1)?.rolledBack).toBeGreaterThan(0)
      expect(tokens[0]?.rolledBack).toBeUndefined()
    })
  }

  it('never ends a generation on unconfirmed tokens: the last window is checked first', async () => {
    // The lie is in the last positions, before a check would otherwise be due.
    const lying = new WindowedFake(new Set([4 + 10 - 1]), 64)
    const tokens = await collect(lying, 0, 11)
    const reference = (await collect(new WindowedFake(new Set(), 64), 0, 11)).map((t) => t.id)
    expect(tokens.map((t) => t.id)).toEqual(reference)
    expect(lying.truncations).toEqual([13])
  })

  it('gives up with a stable code after too many rollbacks', async () => {
    const everywhere = new Set(Array.from({ length: 200 }, (_, i) => i + 4))
    const pipeline = { stages: [new WindowedFake(everywhere, 2)], maxContext: 256 }
    const run = async () => {
      for await (const _ of generate(
        pipeline,
        { promptIds: [1, 2, 3, 4], maxTokens: 100, sampling: { temperature: 0 } },
        undefined,
        { maxRollbacks: 5 },
      )) {
        // drained
      }
    }
    await expect(run()).rejects.toMatchObject({ code: 'ERR_TOO_MANY_ROLLBACKS' })
  })
})

describe('Sampler checkpoints', () => {
  it('restoring a checkpoint replays the same draws and penalties', () => {
    const s = new Sampler({ temperature: 1, seed: 3, frequencyPenalty: 0.5 })
    const t = honest(2, 5)
    s.sample(t)
    const cp = s.checkpoint()
    const first = Array.from({ length: 20 }, () => s.sample(t))
    s.restore(cp)
    const again = Array.from({ length: 20 }, () => s.sample(t))
    expect(again).toEqual(first)
  })
})
