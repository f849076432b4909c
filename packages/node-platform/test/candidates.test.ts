import {
  createMemoryTransport,
  createStageHost,
  MemoryNetwork,
  MessageConnection,
  RemoteStage,
  type StageSession,
  type StageStepOutput,
  syntheticConfig,
  type Transport,
} from '@butterfly/core'
import { buildPipeline } from '@butterfly/testing/node'
import { afterAll, describe, expect, test } from 'vitest'

// The last stage on onnxruntime-node asked for fewer candidates (StageStepInput.candidates):
// exactly the first k of its full top-k, bit for bit, with the same log-sum-exp, in process and
// from a stage host across the wire; per-position rows too. Greedy decoding asks for one.

const config = syntheticConfig('tiny')
const prompt = [1, 40, 75, 80, 75, 35]
type Built = Awaited<ReturnType<typeof buildPipeline>>
const built: Built[] = []
const transports: Transport[] = []
afterAll(async () => {
  for (const t of transports) await t.close()
  for (const p of built) await p.dispose()
})

async function pipeline(): Promise<Built> {
  const p = await buildPipeline(config, 2)
  built.push(p)
  return p
}

/** The last stage of `p` behind a stage host, as a coordinator's RemoteStage sees it. */
async function remoteLast(p: Built): Promise<RemoteStage> {
  const network = new MemoryNetwork()
  const worker = createMemoryTransport({ peerId: 'worker' }, { network })
  const coord = createMemoryTransport({ peerId: 'coord' }, { network })
  transports.push(worker, coord)
  const host = createStageHost(p.stages[1] as StageSession)
  worker.onIncoming((_from, channel) => host.serve(new MessageConnection(channel)))
  const conn = new MessageConnection(await coord.dial('worker'))
  return new RemoteStage(
    {
      peerId: 'worker',
      layerStart: 2,
      layerEnd: 4,
      isFirst: false,
      isLast: true,
      hiddenSize: 64,
      stepTimeoutMs: 10_000,
    },
    conn,
  )
}

/** The prompt then two greedy tokens through stage 0 and `last`; the last stage's outputs. */
async function run(
  p: Built,
  last: StageSession,
  id: string,
  extra: { candidates?: number; allRows?: boolean },
) {
  const outs: StageStepOutput[] = []
  let tokens = prompt
  let at = 0
  for (let i = 0; i < 3; i++) {
    const { hidden } = await (p.stages[0] as StageSession).step(id, {
      tokens,
      seqLen: tokens.length,
      startPos: at,
    })
    const out = await last.step(id, {
      hidden: hidden as Float32Array,
      seqLen: tokens.length,
      startPos: at,
      ...extra,
    })
    outs.push(out)
    at += tokens.length
    tokens = [out.topk?.ids[0] as number]
  }
  return outs
}

describe('fewer candidates from the last stage', () => {
  test('in process and across the wire: the first k of the full list, log-sum-exp unchanged', async () => {
    const p = await pipeline()
    const full = await run(p, p.stages[1] as StageSession, 'full', {})
    expect(full[0]?.topk?.values.length).toBe(64)
    const remote = await remoteLast(p)
    for (const [name, last] of [
      ['local', p.stages[1] as StageSession],
      ['remote', remote],
    ] as const) {
      for (const k of [1, 5]) {
        const got = await run(p, last, `${name}-${k}`, { candidates: k })
        for (const [i, out] of got.entries()) {
          const want = full[i]?.topk
          expect(out.topk, `${name} k=${k} step ${i}`).toEqual({
            values: want?.values.slice(0, k),
            ids: want?.ids.slice(0, k),
            logSumExp: want?.logSumExp,
          })
        }
      }
    }
  })

  test('per-position rows are cut to k as well', async () => {
    const p = await pipeline()
    const last = p.stages[1] as StageSession
    const [full] = await run(p, last, 'rows-full', { allRows: true })
    const [cut] = await run(p, last, 'rows-cut', { allRows: true, candidates: 2 })
    const rows = full?.rowTopk
    expect(rows?.rows).toBe(prompt.length)
    expect(cut?.rowTopk?.k).toBe(2)
    for (let r = 0; r < prompt.length; r++) {
      const k = rows?.k as number
      expect(Array.from(cut?.rowTopk?.ids.subarray(2 * r, 2 * r + 2) ?? [])).toEqual(
        Array.from(rows?.ids.subarray(k * r, k * r + 2) ?? []),
      )
    }
    expect(cut?.rowTopk?.logSumExp).toEqual(rows?.logSumExp)
  })

  test('a candidate count that is not a positive integer is refused with ERR_STEP_INPUT', async () => {
    const p = await pipeline()
    const { hidden } = await (p.stages[0] as StageSession).step('bad', {
      tokens: prompt,
      seqLen: prompt.length,
      startPos: 0,
    })
    for (const candidates of [0, -1, 1.5, Number.NaN]) {
      await expect(
        (p.stages[1] as StageSession).step('bad', {
          hidden: hidden as Float32Array,
          seqLen: prompt.length,
          startPos: 0,
          candidates,
        }),
      ).rejects.toMatchObject({ code: 'ERR_STEP_INPUT' })
    }
  })
})
