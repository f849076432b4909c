import {
  calibrate,
  createMemoryTransport,
  createStageHost,
  generate,
  generateIdentity,
  type HiddenDtype,
  MemoryNetwork,
  MessageConnection,
  type Pipeline,
  RemoteStage,
  ReplicatedStage,
  ReputationBook,
  type StageSession,
  signResult,
  type ToleranceTable,
  type Transport,
  uniformPartition,
} from '@butterfly/core'
import { relativeError, syntheticConfig, syntheticWeights } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createNodeBackend } from '../src/backend/node-backend.js'

/*
 * Hidden states on the wire as fp16, through real onnxruntime-node stages of synthetic:tiny
 * (2 stages, layers [0,2) and [2,4)), each served by a signing stage host over the in-memory
 * transport. The coordinator's RemoteStages are the same for fp32 and fp16 but for hiddenDtype.
 *
 * What must hold: greedy tokens over fp16 equal those over fp32 for all TOKENS (no near-tie flips
 * on this prompt; checked, not assumed), and, teacher-forced on the fp32 tokens, every step's
 * top-k logits within LOGIT_TOL relative (to the step's largest logit) of fp32. fp16 rounds each
 * hidden value to within 2^-11 relative; the second stage's layers and norm carry that to the
 * logits at no more than a few times 2^-11, while any real error (a wrong layer, a dropped row)
 * is O(1).
 */

const config = syntheticConfig('tiny')
const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const TOKENS = 32
/** 4 * 2^-11; measured worst 1.5e-4 on this prompt. */
const LOGIT_TOL = 4 * 2 ** -11
const MESH = 'm'
const REPLICAS = 3
const ranges = uniformPartition(config.numLayers, 2)
const identity = generateIdentity()
const network = new MemoryNetwork()
const transports: Transport[] = []
const locals: StageSession[] = []
/** Peer ids of the workers of each stage: `s{stage}-r{replica}`. */
const peers: string[][] = [[], []]
let coord: Transport
let tolerances: ToleranceTable

beforeAll(async () => {
  const backend = createNodeBackend({ threads: 1 })
  const weights = syntheticWeights(config)
  for (let s = 0; s < 2; s++) {
    const r = ranges[s] as { start: number; end: number }
    for (let i = 0; i < REPLICAS; i++) {
      const local = await backend.createStage(
        { config, layerStart: r.start, layerEnd: r.end, topK: 8 },
        weights,
      )
      locals.push(local)
      const host = createStageHost(local, { sign: (f) => signResult(identity, { ...f, mesh: MESH }) })
      const peerId = `s${s}-r${i}`
      const worker = createMemoryTransport({ peerId }, { network })
      worker.onIncoming((_from, channel) => {
        host.serve(new MessageConnection(channel))
      })
      transports.push(worker)
      peers[s]?.push(peerId)
    }
  }
  coord = createMemoryTransport({ peerId: 'coord' }, { network })
  transports.push(coord)
  // Calibration as the gateway runs it: through the wire the mesh uses, so fp16 rounding is in it.
  const samples = await Promise.all(
    (peers[0] as string[]).map(async (p) => {
      const stage = await remote(0, p, 'fp16')
      const out = await stage.step('calibrate', { tokens: PROMPT, seqLen: PROMPT.length, startPos: 0 })
      stage.endGeneration('calibrate')
      return { cls: 'cpu/fp32', hidden: out.hidden as Float32Array, peerId: p }
    }),
  )
  const cal = calibrate(samples, samples[0]?.hidden as Float32Array, { hiddenSize: config.hiddenSize })
  expect(cal.rejected).toEqual([])
  tolerances = cal.table
}, 120_000)

afterAll(async () => {
  for (const t of transports) await t.close()
  await Promise.all(locals.map((s) => s.dispose()))
})

async function remote(s: number, peerId: string, hiddenDtype: HiddenDtype): Promise<RemoteStage> {
  const r = ranges[s] as { start: number; end: number }
  return new RemoteStage(
    {
      peerId,
      layerStart: r.start,
      layerEnd: r.end,
      isFirst: s === 0,
      isLast: s === 1,
      hiddenSize: config.hiddenSize,
      stepTimeoutMs: 30_000,
      verifyKey: identity.publicKey,
      mesh: MESH,
      hiddenDtype,
    },
    new MessageConnection(await coord.dial(peerId)),
  )
}

async function pipeline(dtype: HiddenDtype): Promise<Pipeline> {
  const stages = [await remote(0, 's0-r0', dtype), await remote(1, 's1-r0', dtype)]
  return { stages, maxContext: config.maxContext }
}

async function greedy(p: Pipeline): Promise<number[]> {
  const ids: number[] = []
  for await (const t of generate(p, { promptIds: PROMPT, maxTokens: TOKENS, sampling: { temperature: 0 } })) {
    ids.push(t.id)
  }
  return ids
}

/** Top-k logits of every step when fed `tokens` after the prompt (teacher forcing). */
async function forcedTopk(p: Pipeline, id: string, tokens: readonly number[]): Promise<Float32Array[]> {
  const [first, last] = p.stages as [StageSession, StageSession]
  const out: Float32Array[] = []
  let pos = 0
  for (const chunk of [PROMPT, ...tokens.slice(0, -1).map((t) => [t])]) {
    const h = await first.step(id, { tokens: chunk, seqLen: chunk.length, startPos: pos })
    const r = await last.step(id, { hidden: h.hidden as Float32Array, seqLen: chunk.length, startPos: pos })
    out.push(r.topk?.values as Float32Array)
    pos += chunk.length
  }
  return out
}

describe('fp16 hidden states between real ORT stages', () => {
  test(`greedy tokens over fp16 equal fp32 for ${TOKENS} tokens; top-k logits within ${LOGIT_TOL}`, async () => {
    const fp32 = await pipeline('fp32')
    const fp16 = await pipeline('fp16')
    const reference = await greedy(fp32)
    expect(reference).toHaveLength(TOKENS)
    expect(await greedy(fp16)).toEqual(reference)
    const a = await forcedTopk(fp32, 'forced32', reference)
    const b = await forcedTopk(fp16, 'forced16', reference)
    let worst = 0
    for (let i = 0; i < a.length; i++)
      worst = Math.max(worst, relativeError(b[i] as Float32Array, a[i] as Float32Array))
    expect(worst).toBeLessThan(LOGIT_TOL)
    // Not vacuous: the wire did round (fp32 and fp16 logits are not identical).
    expect(worst).toBeGreaterThan(0)
  }, 120_000)

  for (const verification of ['every-step', 'windowed'] as const) {
    test(`replicated voting (f = 1, ${verification}) over fp16: honest replicas agree, nobody flagged`, async () => {
      const book = new ReputationBook({ trustAfter: verification === 'windowed' ? 2 : 1_000_000 })
      let x = 99
      const rng = () => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0
        return x / 2 ** 32
      }
      const stages = await Promise.all(
        [0, 1].map(async (s) => {
          const r = ranges[s] as { start: number; end: number }
          const replicas = await Promise.all(
            (peers[s] as string[]).map(async (p) => ({
              peerId: p,
              cls: 'cpu/fp32',
              session: await remote(s, p, 'fp16'),
            })),
          )
          return new ReplicatedStage(
            {
              layerStart: r.start,
              layerEnd: r.end,
              isFirst: s === 0,
              isLast: s === 1,
              hiddenSize: config.hiddenSize,
              f: 1,
              stage: s,
              verification,
              window: 4,
            },
            { replicas, tolerances, reputation: book, rng },
          )
        }),
      )
      const tokens = await greedy({ stages, maxContext: config.maxContext })
      expect(tokens).toEqual(await greedy(await pipeline('fp16')))
      // The middle stage's votes compare fp16 states with fingerprints of fp16 states.
      expect(stages[0]?.stats.fingerprints).toBeGreaterThan(0)
      for (const st of stages) {
        expect([st.stats.rollbacks, st.stats.escalations, st.stats.failures]).toEqual([0, 0, 0])
        expect(st.replicas().every((r) => r.state !== 'flagged' && r.state !== 'retired')).toBe(true)
      }
      if (verification === 'windowed') expect(stages.some((s) => s.stats.windows > 0)).toBe(true)
    }, 120_000)
  }
})
