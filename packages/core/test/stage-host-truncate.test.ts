import { FaultyStage } from '@butterfly/testing'
import { afterEach, describe, expect, test } from 'vitest'
import {
  checkTruncateLength,
  type StageSession,
  type StageStepInput,
  type StageStepOutput,
} from '../src/engine/inference-backend.js'
import { GenerationError } from '../src/errors.js'
import { createStageHost } from '../src/mesh/stage-host.js'
import { createMemoryTransport, MemoryNetwork } from '../src/transport/memory-transport.js'
import { MessageConnection } from '../src/transport/message-connection.js'
import type { Transport } from '../src/transport/transport.js'
import { FrameType } from '../src/wire/frame.js'
import type { ReceivedMessage, StepRequest } from '../src/wire/messages.js'
import { HIDDEN, rejection, remote } from './remote-stage-helpers.js'
import { frameOf, RawBody } from './wire-helpers.js'

// Rollback over a real MessageConnection: RemoteStage.truncate sends Truncate after the
// generation's pending steps, and the stage host applies it in order, for its owner only.

/** Keeps each generation's length like a real cache (ERR_STEP_ORDER otherwise); steps can be held. */
class CountingStage implements StageSession {
  readonly layerStart = 1
  readonly layerEnd = 2
  readonly isFirst = false
  readonly isLast = false
  readonly lengths = new Map<string, number>()
  readonly events: string[] = []
  /** When set, steps wait for it before they finish. */
  hold: Promise<void> | undefined

  get activeGenerations(): number {
    return this.lengths.size
  }

  async step(id: string, input: StageStepInput): Promise<StageStepOutput> {
    const length = this.lengths.get(id) ?? 0
    if (input.startPos !== length) {
      throw new GenerationError('ERR_STEP_ORDER', `step at ${input.startPos}, cache holds ${length}`)
    }
    await this.hold
    this.lengths.set(id, length + input.seqLen)
    this.events.push(`step ${id} ${input.startPos}+${input.seqLen}`)
    // The output names the position, so a step at the wrong place shows.
    return { hidden: (input.hidden as Float32Array).map((v) => v + 10 * input.startPos) }
  }

  async truncate(id: string, length: number): Promise<void> {
    checkTruncateLength(id, length)
    this.events.push(`truncate ${id} ${length}`)
    const held = this.lengths.get(id)
    if (held !== undefined) this.lengths.set(id, Math.min(held, length))
  }

  endGeneration(id: string): void {
    this.lengths.delete(id)
  }

  async dispose(): Promise<void> {}
}

const transports: Transport[] = []
afterEach(async () => {
  for (const t of transports.splice(0)) await t.close()
})

/** A stage host on an in-memory network, and `count` coordinator connections to it. */
async function mesh(count: number, peer?: (conn: MessageConnection) => void) {
  const network = new MemoryNetwork()
  const worker = createMemoryTransport({ peerId: 'worker' }, { network })
  transports.push(worker)
  const stage = new CountingStage()
  const host = createStageHost(stage)
  const protocolErrors: string[] = []
  worker.onIncoming((_from, channel) => {
    const conn = new MessageConnection(channel)
    conn.onProtocolError((err) => protocolErrors.push(err.code))
    if (peer) peer(conn)
    else host.serve(conn)
  })
  const conns: MessageConnection[] = []
  for (let i = 0; i < count; i++) {
    const coord = createMemoryTransport({ peerId: `coord${i}` }, { network })
    transports.push(coord)
    conns.push(new MessageConnection(await coord.dial('worker')))
  }
  return { stage, host, conns, protocolErrors }
}

const hidden = (seqLen: number, v = 1) => new Float32Array(seqLen * HIDDEN).fill(v)
const ask = (startPos: number, seqLen = 1): StageStepInput => ({ hidden: hidden(seqLen), seqLen, startPos })

/** The generation and step a reply is for, if it is one. */
const about = (m: ReceivedMessage) =>
  m.type === 'StepResult' || m.type === 'StepError' ? `${m.generationId}:${m.stepIndex}` : ''

/** The next message on `conn` that `match` accepts (a batch's results one by one). */
function next(conn: MessageConnection, match: (m: ReceivedMessage) => boolean): Promise<ReceivedMessage> {
  return new Promise((resolve) => {
    const off = conn.onMessage((m) => {
      const each: ReceivedMessage[] = m.type === 'StepResults' ? m.results.map((i) => i.result) : [m]
      const hit = each.find(match)
      if (hit === undefined) return
      off()
      resolve(hit)
    })
  })
}

/** Sends a Ping and waits for its Pong: everything sent before it on `conn` has been handled. */
async function roundTrip(conn: MessageConnection, nonce: number): Promise<void> {
  const pong = next(conn, (m) => m.type === 'Pong' && m.nonce === nonce)
  await conn.send({ type: 'Ping', nonce, sentAt: 0 })
  await pong
}

const stepRequest = (
  generationId: string,
  startPos: number,
  extra: Partial<StepRequest> = {},
): StepRequest => ({
  type: 'StepRequest',
  generationId,
  stepIndex: startPos,
  startPos,
  seqLen: 1,
  temperature: 0,
  deadlineMs: 0,
  hidden: hidden(1),
  ...extra,
})

describe('truncate through RemoteStage and the stage host', () => {
  test('a step at the truncated position works; one at the old position fails ERR_STEP_ORDER', async () => {
    const { stage, conns } = await mesh(1)
    const r = remote(conns[0] as MessageConnection)
    await r.step('g', ask(0, 3))
    await r.step('g', ask(3))
    await r.truncate('g', 2)
    const err = await r.step('g', ask(4)).catch((e: unknown) => e)
    expect(err).toMatchObject({ name: 'GenerationError', code: 'ERR_STEP_ORDER' })
    const out = await r.step('g', ask(2))
    expect(Array.from(out.hidden ?? [])).toEqual(Array.from(hidden(1, 21)))
    expect(stage.lengths.get('g')).toBe(3)
    expect(stage.events).toEqual(['step g 0+3', 'step g 3+1', 'truncate g 2', 'step g 2+1'])
  })

  test('truncating past the end, or a generation never stepped, changes nothing', async () => {
    const { stage, conns } = await mesh(1)
    const r = remote(conns[0] as MessageConnection)
    await r.step('g', ask(0, 2))
    await r.truncate('g', 2)
    await r.truncate('g', 0xffffffff + 5)
    await r.truncate('other', 0)
    await r.step('g', ask(2))
    expect(stage.events).toEqual(['step g 0+2', 'truncate g 2', 'truncate g 4294967295', 'step g 2+1'])
  })

  test('bad lengths fail with ERR_TRUNCATE before anything is sent', async () => {
    const { stage, conns } = await mesh(1)
    const r = remote(conns[0] as MessageConnection)
    await r.step('g', ask(0))
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      await expect(r.truncate('g', bad)).rejects.toMatchObject({
        name: 'GenerationError',
        code: 'ERR_TRUNCATE',
      })
    }
    await roundTrip(conns[0] as MessageConnection, 1)
    expect(stage.events).toEqual(['step g 0+1'])
  })

  test('the host applies a Truncate after the steps of that generation it received before', async () => {
    const { stage, conns } = await mesh(1)
    const conn = conns[0] as MessageConnection
    let release = (): void => undefined
    stage.hold = new Promise((resolve) => {
      release = resolve
    })
    // Sent raw, back to back: the step is still running when the Truncate arrives.
    const first = next(conn, (m) => m.type === 'StepResult' && m.stepIndex === 0)
    await conn.send(stepRequest('g', 0))
    await conn.send({ type: 'Truncate', generationId: 'g', length: 0 })
    await roundTrip(conn, 2)
    expect(stage.events).toEqual([])
    release()
    await first
    stage.hold = undefined
    const again = next(conn, (m) => about(m) === 'g:0')
    await conn.send(stepRequest('g', 0))
    expect((await again).type).toBe('StepResult')
    expect(stage.events).toEqual(['step g 0+1', 'truncate g 0', 'step g 0+1'])
  })

  test("a Truncate for another connection's generation does nothing", async () => {
    const { stage, conns } = await mesh(2)
    const [a, b] = conns as [MessageConnection, MessageConnection]
    const r = remote(a)
    await r.step('g', ask(0, 2))
    await b.send({ type: 'Truncate', generationId: 'g', length: 0 })
    await roundTrip(b, 3)
    await r.step('g', ask(2))
    expect(stage.events).toEqual(['step g 0+2', 'step g 2+1'])
  })

  test('a malformed Truncate frame is a protocol error, not a crash or a rollback', async () => {
    const { stage, conns, protocolErrors } = await mesh(1)
    const conn = conns[0] as MessageConnection
    const r = remote(conn)
    await r.step('g', ask(0, 2))
    const bodies = [
      new RawBody().id('g').build(), // no length
      new RawBody().id('g').u32(0).u32(0).build(), // bytes after it
      new RawBody().id('g!').u32(0).build(), // bad generation id
    ]
    for (const [i, body] of bodies.entries()) {
      conn.channel.send(frameOf(FrameType.Truncate, body, { messageId: 1000 + i }))
    }
    await roundTrip(conn, 4)
    expect(protocolErrors).toEqual(['ERR_WIRE_PAYLOAD', 'ERR_WIRE_PAYLOAD', 'ERR_WIRE_PAYLOAD'])
    await r.step('g', ask(2))
    expect(stage.events).toEqual(['step g 0+2', 'step g 2+1'])
  })

  test('the kept output of a fingerprinted step goes when the rollback reaches its start', async () => {
    const { conns } = await mesh(1)
    const conn = conns[0] as MessageConnection
    const fetchAfter = async (length: number, id: string) => {
      // The fingerprint answers the step; only then may the coordinator truncate and fetch.
      const fingerprint = next(conn, (m) => about(m) === `${id}:1`)
      await conn.send(stepRequest(id, 0))
      await conn.send(stepRequest(id, 1, { fingerprintChallenge: 9 }))
      expect((await fingerprint) as { fingerprint?: Uint8Array }).toMatchObject({ type: 'StepResult' })
      const fetched = next(conn, (m) => about(m) === `${id}:1`)
      await conn.send({ type: 'Truncate', generationId: id, length })
      await conn.send({ type: 'FetchHidden', generationId: id, stepIndex: 1 })
      return fetched
    }
    const kept = await fetchAfter(2, 'k')
    expect(kept.type).toBe('StepResult')
    expect(Array.from((kept as { hidden?: Float32Array }).hidden ?? [])).toEqual(Array.from(hidden(1, 11)))
    const dropped = await fetchAfter(1, 'd')
    expect(dropped).toMatchObject({ type: 'StepError', error: { code: 'ERR_HIDDEN_UNAVAILABLE' } })
    // A Truncate sent right behind the step (before its answer) drops what that step keeps.
    const answered = next(conn, (m) => about(m) === 'r:0')
    await conn.send(stepRequest('r', 0, { fingerprintChallenge: 3 }))
    await conn.send({ type: 'Truncate', generationId: 'r', length: 0 })
    expect(await answered).toMatchObject({ type: 'StepResult' })
    const refused = next(conn, (m) => about(m) === 'r:0')
    await conn.send({ type: 'FetchHidden', generationId: 'r', stepIndex: 0 })
    expect(await refused).toMatchObject({ type: 'StepError', error: { code: 'ERR_HIDDEN_UNAVAILABLE' } })
  })
})

describe('RemoteStage.truncate', () => {
  /** A coordinator's RemoteStage and a worker that only records, and answers when told. */
  async function held() {
    const seen: ReceivedMessage[] = []
    const arrived: Array<() => void> = []
    let worker: MessageConnection | undefined
    const { conns } = await mesh(1, (conn) => {
      worker = conn
      conn.onMessage((m) => {
        seen.push(m)
        if (m.type === 'Ping') void conn.send({ type: 'Pong', nonce: m.nonce, sentAt: 0 })
        for (const w of arrived.splice(0)) w()
      })
    })
    const conn = conns[0] as MessageConnection
    const r = remote(conn)
    /** Resolves once the worker has received `n` messages. */
    const received = (n: number) =>
      new Promise<void>((resolve) => {
        const check = () => (seen.length >= n ? resolve() : arrived.push(check))
        check()
      })
    const answer = (startPos: number) =>
      (worker as MessageConnection).send({
        type: 'StepResult',
        generationId: 'g',
        stepIndex: startPos,
        hidden: hidden(1),
      })
    return { conn, r, seen, received, answer }
  }
  const types = (seen: ReceivedMessage[]) => seen.map((m) => m.type)

  test("waits for the generation's pending step before it sends the Truncate", async () => {
    const { conn, r, seen, received, answer } = await held()
    const step = r.step('g', ask(0))
    await received(1)
    let sent = false
    const truncated = r.truncate('g', 0).then(() => {
      sent = true
    })
    // Had it not waited, the Truncate would be on the wire ahead of this Ping.
    await roundTrip(conn, 5)
    expect(types(seen)).toEqual(['StepRequest', 'Ping'])
    expect(sent).toBe(false)
    await answer(0)
    await step
    await truncated
    await received(3)
    expect(seen[2]).toEqual({ type: 'Truncate', generationId: 'g', length: 0 })
  })

  test('fails with ERR_STAGE_BUSY when a step of the generation started while it waited', async () => {
    const { r, seen, received, answer } = await held()
    const first = r.step('g', ask(0))
    await received(1)
    const truncated = rejection(r.truncate('g', 0))
    const second = r.step('g', ask(1))
    await received(2)
    await answer(0)
    await first
    expect((await truncated).code).toBe('ERR_STAGE_BUSY')
    await answer(1)
    await second
    expect(types(seen)).toEqual(['StepRequest', 'StepRequest'])
  })

  test('sends nothing for a generation it never stepped', async () => {
    const { conn, r, seen } = await held()
    await r.truncate('never', 0)
    await roundTrip(conn, 6)
    expect(types(seen)).toEqual(['Ping'])
  })

  test('rejects with ERR_STAGE_GONE once the stage is gone, like step', async () => {
    const { r, received, answer } = await held()
    const step = r.step('g', ask(0))
    await received(1)
    await answer(0)
    await step
    await r.dispose()
    expect((await rejection(r.truncate('g', 0))).code).toBe('ERR_STAGE_GONE')
    expect((await rejection(r.step('g', ask(1)))).code).toBe('ERR_STAGE_GONE')
  })
})

describe('FaultyStage.truncate', () => {
  test("a 'stale' replica forgets outputs the rollback removed and passes the truncate on", async () => {
    const inner = new CountingStage()
    const faulty = new FaultyStage(inner, { mode: 'stale' })
    const at = async (startPos: number) => (await faulty.step('g', ask(startPos))).hidden?.[0]
    // Outputs name their position: 1 + 10 * startPos. 'stale' answers with the previous one.
    expect([await at(0), await at(1), await at(2)]).toEqual([1, 1, 11])
    await faulty.truncate('g', 2)
    // The previous output (of position 2) is gone with the rollback: nothing stale to give.
    expect(await at(2)).toBe(21)
    await faulty.truncate('g', 3)
    expect(await at(3)).toBe(21)
    expect(faulty.truncations).toEqual([
      { generationId: 'g', length: 2 },
      { generationId: 'g', length: 3 },
    ])
    expect(inner.events.filter((e) => e.startsWith('truncate'))).toEqual(['truncate g 2', 'truncate g 3'])
  })
})
