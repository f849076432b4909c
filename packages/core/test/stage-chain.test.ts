import { afterEach, describe, expect, test } from 'vitest'
import type { StageSession, StageStepInput, StageStepOutput } from '../src/engine/inference-backend.js'
import { generateIdentity, type PeerIdentity } from '../src/identity/peer-identity.js'
import { signResults } from '../src/identity/step-signature.js'
import { PeerLinks } from '../src/mesh/peer-links.js'
import { RemoteStage } from '../src/mesh/remote-stage.js'
import { createStageHost } from '../src/mesh/stage-host.js'
import { createMemoryTransport, MemoryNetwork } from '../src/transport/memory-transport.js'
import { MessageConnection } from '../src/transport/message-connection.js'
import type { Transport } from '../src/transport/transport.js'
import type { ReceivedMessage } from '../src/wire/messages.js'
import { MESH, signerFor } from './remote-stage-helpers.js'

/** The error a step failed with: local ones are StageErrors, remote ones keep name and code. */
async function rejection(p: Promise<unknown>): Promise<{ name: string; code: string; message: string }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(Error)
  expect((err as Error).name).toBe('StageError')
  return err as { name: string; code: string; message: string }
}

// Chained steps over the in-memory transport: a coordinator, three workers each with a real
// stage host and PeerLinks (what worker-node runs), hidden states hopping worker to worker.

const HIDDEN = 4

/** Stage i of three: the first embeds tokens, the middle doubles and adds its position, the last sums into a top-k. */
class ToyStage implements StageSession {
  readonly layerEnd: number
  readonly isFirst: boolean
  readonly isLast: boolean
  readonly ended: string[] = []
  readonly stepped: string[] = []
  /** When set, steps wait for it. */
  hold: Promise<void> | undefined
  private readonly live = new Set<string>()

  constructor(readonly layerStart: number) {
    this.layerEnd = layerStart + 1
    this.isFirst = layerStart === 0
    this.isLast = layerStart === 2
  }

  get activeGenerations(): number {
    return this.live.size
  }

  async step(id: string, input: StageStepInput): Promise<StageStepOutput> {
    await this.hold
    this.live.add(id)
    this.stepped.push(`${id}@${input.startPos}`)
    if (this.isFirst) {
      const tokens = input.tokens as readonly number[]
      return {
        hidden: Float32Array.from({ length: tokens.length * HIDDEN }, (_, i) => tokens[i >> 2] as number),
      }
    }
    const hidden = input.hidden as Float32Array
    if (!this.isLast) return { hidden: hidden.map((v) => 2 * v + input.startPos) }
    const sum = hidden.reduce((a, b) => a + b, 0)
    return {
      topk: {
        values: Float32Array.of(sum, 0),
        ids: Int32Array.of(Math.round(sum) % 1000, 1),
        logSumExp: sum,
      },
    }
  }

  async truncate(): Promise<void> {}
  endGeneration(id: string): void {
    this.ended.push(id)
    this.live.delete(id)
  }
  async dispose(): Promise<void> {}
}

/** The coordinator's view of the chain w0 → w1 → w2: one stage of all three layers. */
const CHAIN_INIT = {
  peerId: 'w0',
  layerStart: 0,
  layerEnd: 3,
  isFirst: true,
  isLast: true,
  hiddenSize: HIDDEN,
  stepTimeoutMs: 10_000,
}

const transports: Transport[] = []
afterEach(async () => {
  for (const t of transports.splice(0)) await t.close()
})

interface Worker {
  readonly stage: ToyStage
  readonly identity: PeerIdentity
  readonly links: PeerLinks
  readonly transport: Transport
}

/** Three workers w0, w1, w2 in a plan, and a coordinator with a connection to each. */
async function mesh() {
  const network = new MemoryNetwork()
  const plan = ['w0', 'w1', 'w2']
  const workers: Worker[] = plan.map((peerId, i) => {
    const transport = createMemoryTransport({ peerId }, { network })
    transports.push(transport)
    const identity = generateIdentity()
    const stage = new ToyStage(i)
    let serve = (_conn: MessageConnection): void => undefined
    const links = new PeerLinks(transport, (conn) => serve(conn))
    links.setPlan(plan)
    const host = createStageHost(stage, {
      sign: signerFor(identity),
      signBatch: (fs) => signResults(identity, MESH, fs),
      links,
    })
    serve = (conn) => void host.serve(conn)
    return { stage, identity, links, transport }
  })
  const coord = createMemoryTransport({ peerId: 'coord' }, { network })
  transports.push(coord)
  const conns = await Promise.all(plan.map(async (p) => new MessageConnection(await coord.dial(p))))
  /** The chain's stage, checking answers against worker `signer`'s key (the last one's, w2). */
  const chained = (signer = 2) =>
    new RemoteStage(
      { ...CHAIN_INIT, verifyKey: (workers[signer] as Worker).identity.publicKey, mesh: MESH },
      conns[0] as MessageConnection,
      { route: ['w1', 'w2'], replyTo: 'coord', connections: conns.slice(1) },
    )
  return { network, workers, conns, chained }
}

/** Messages of each type the coordinator receives on a connection. */
function countTypes(conn: MessageConnection): Map<string, number> {
  const seen = new Map<string, number>()
  conn.onMessage((m: ReceivedMessage) => seen.set(m.type, (seen.get(m.type) ?? 0) + 1))
  return seen
}

describe('chained stages (worker to worker)', () => {
  test("a step hops w0 → w1 → w2 and only w2's signed top-k comes back", async () => {
    const { conns, chained } = await mesh()
    const [fromW0, fromW1, fromW2] = conns.map(countTypes)
    const stage = chained()
    const out = await stage.step('g1', { tokens: [3, 5], seqLen: 2, startPos: 0 })
    // w0: [3,3,3,3,5,5,5,5]; w1 at position 0: doubled → sum 64; w2 answers the sum.
    expect(out.topk?.values[0]).toBe(64)
    expect(out.hidden).toBeUndefined()
    const next = await stage.step('g1', { tokens: [1], seqLen: 1, startPos: 2 })
    expect(next.topk?.values[0]).toBe(4 * (2 * 1 + 2))
    expect(fromW0?.size).toBe(0)
    expect(fromW1?.size).toBe(0)
    expect((fromW2?.get('StepResult') ?? 0) + (fromW2?.get('StepResults') ?? 0)).toBe(2)
    expect(stage.provenance('g1')?.peers).toEqual(['w0', 'w1', 'w2'])
  })

  test('generations batched together each get their own answer, batched on every hop', async () => {
    const { workers, chained } = await mesh()
    const stage = chained()
    const outs = await Promise.all(
      Array.from({ length: 12 }, (_, g) => stage.step(`g${g}`, { tokens: [g], seqLen: 1, startPos: 0 })),
    )
    expect(outs.map((o) => o.topk?.values[0])).toEqual(Array.from({ length: 12 }, (_, g) => 8 * g))
    expect(workers.map((w) => w.stage.stepped.length)).toEqual([12, 12, 12])
  })

  test('a result signed by a middle peer instead of the last is refused', async () => {
    const { chained } = await mesh()
    // The chain expects w1's key, but w2 answers: ERR_STAGE_REPLY, not a silent accept.
    const stage = chained(1)
    const err = await rejection(stage.step('g1', { tokens: [1], seqLen: 1, startPos: 0 }))
    expect(err.code).toBe('ERR_STAGE_REPLY')
  })

  test('a worker whose plan lacks the next peer answers ERR_CHAIN_LINK to the coordinator', async () => {
    const { workers, chained } = await mesh()
    ;(workers[1] as Worker).links.setPlan(['w0', 'w1'])
    const err = await rejection(chained().step('g1', { tokens: [1], seqLen: 1, startPos: 0 }))
    expect(err.code).toBe('ERR_CHAIN_LINK')
    expect(err.message).toMatch(/w2 holds no stage/)
    expect((workers[2] as Worker).stage.stepped).toEqual([])
  })

  test("a later worker's refusal reaches the coordinator through the worker before it", async () => {
    const { workers, chained } = await mesh()
    // w2's plan lacks w1: it refuses w1's forward to w1, which relays the error to the coordinator.
    ;(workers[2] as Worker).links.setPlan(['w0', 'w2'])
    const err = await rejection(chained().step('g1', { tokens: [1], seqLen: 1, startPos: 0 }))
    expect(err.code).toBe('ERR_CHAIN_LINK')
    expect(err.message).toMatch(/routed steps come from the coordinator or a peer of the plan/)
    expect((workers[2] as Worker).stage.stepped).toEqual([])
  })

  test('routed steps from a peer outside the plan are refused to that peer', async () => {
    const { network, workers } = await mesh()
    const rogue = createMemoryTransport({ peerId: 'rogue' }, { network })
    transports.push(rogue)
    const conn = new MessageConnection(await rogue.dial('w1'))
    const replies: ReceivedMessage[] = []
    const answered = new Promise<void>((resolve) =>
      conn.onMessage((m) => {
        replies.push(m)
        resolve()
      }),
    )
    await conn.send({
      type: 'StepRequest',
      generationId: 'g-rogue',
      stepIndex: 0,
      startPos: 0,
      seqLen: 1,
      temperature: 0,
      deadlineMs: 0,
      hidden: new Float32Array(HIDDEN),
      route: ['w2'],
      replyTo: 'coord',
    })
    await answered
    expect(replies[0]).toMatchObject({ type: 'StepError', error: { code: 'ERR_CHAIN_LINK' } })
    expect((workers[1] as Worker).stage.stepped).toEqual([])
    expect((workers[2] as Worker).stage.stepped).toEqual([])
  })

  test('a worker on the route going away fails the step with ERR_STAGE_GONE', async () => {
    const { workers, chained } = await mesh()
    const stage = chained()
    const w1 = workers[1] as Worker
    let release = (): void => undefined
    w1.stage.hold = new Promise((resolve) => {
      release = resolve
    })
    const step = stage.step('g1', { tokens: [1], seqLen: 1, startPos: 0 })
    await w1.transport.close()
    const err = await rejection(step)
    expect(err.code).toBe('ERR_STAGE_GONE')
    release()
  })

  test('a step cancelled in flight is ended again on the later peers once it lands', async () => {
    const { workers, chained } = await mesh()
    const stage = chained()
    const [w0, w1, w2] = workers as [Worker, Worker, Worker]
    let release = (): void => undefined
    w1.stage.hold = new Promise((resolve) => {
      release = resolve
    })
    const abort = new AbortController()
    const step = stage.step('g1', { tokens: [1], seqLen: 1, startPos: 0 }, abort.signal)
    // The step waits on w1 (w0 already ran it): cancel, and end the generation meanwhile.
    await expect.poll(() => w0.stage.stepped.length).toBe(1)
    abort.abort(new Error('client gone'))
    await expect(step).rejects.toThrow('client gone')
    stage.endGeneration('g1')
    // w2's EndGeneration came before the step it ends: the step still builds a cache there...
    await expect.poll(() => w2.stage.ended.length).toBe(1)
    release()
    await expect.poll(() => w2.stage.stepped.length).toBe(1)
    // ...and its late answer makes the coordinator end it again, after it, on every peer.
    await expect.poll(() => w2.stage.ended.length).toBe(2)
    await expect.poll(() => w2.stage.activeGenerations).toBe(0)
    expect(w1.stage.activeGenerations).toBe(0)
  })

  test('a peer leaving the plan loses its worker links (it may come back under the same id)', async () => {
    const { workers, chained } = await mesh()
    await chained().step('g1', { tokens: [1], seqLen: 1, startPos: 0 })
    const w1 = workers[1] as Worker
    const toW2 = w1.links.connectionOf('w2')
    expect(toW2?.closed).toBe(false)
    w1.links.setPlan(['w0', 'w1'])
    expect(toW2?.closed).toBe(true)
    expect(w1.links.connectionOf('w2')).toBeUndefined()
    // The coordinator is in no plan and keeps its connection.
    expect(w1.links.connectionOf('coord')?.closed).toBe(false)
  })

  test('a chain needs distinct peers and one connection each', async () => {
    const { conns } = await mesh()
    const init = CHAIN_INIT
    const entry = conns[0] as MessageConnection
    expect(() => new RemoteStage(init, entry, { route: [], replyTo: 'coord', connections: [] })).toThrow(
      /route/,
    )
    expect(
      () =>
        new RemoteStage(init, entry, {
          route: ['w1', 'w2'],
          replyTo: 'coord',
          connections: conns.slice(1, 2),
        }),
    ).toThrow(/one connection each/)
    expect(
      () =>
        new RemoteStage(init, entry, { route: ['w1', 'w1'], replyTo: 'coord', connections: conns.slice(1) }),
    ).toThrow(/distinct/)
  })
})
