import { ControlSession, type ControlSessionInit, generateIdentity, type PlanMessage } from '@butterfly/core'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer, tinyModel } from './helpers.js'

// A peer's membership across servers (core's ControlSession, which `butterfly-worker join
// --server A,B` runs on): real socket.io servers on port 0, each holding its own mesh.

vi.setConfig({ testTimeout: 20_000 })

let model: Awaited<ReturnType<typeof tinyModel>>
const open: SignalServer[] = []
const sessions: ControlSession[] = []

beforeAll(async () => {
  model = await tinyModel()
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.leave()))
  await Promise.all(open.map((s) => s.close().catch(() => undefined)))
  await model.cleanup()
})

async function server(meshToken: string, port = 0): Promise<SignalServer> {
  const s = await startServer({ port, meshes: [{ name: 'm', modelDir: model.dir, meshToken }] })
  open.push(s)
  return s
}

function init(servers: readonly SignalServer[], over: Partial<ControlSessionInit> = {}): ControlSessionInit {
  return {
    servers: servers.map((s) => s.url),
    join: {
      mesh: 'm',
      token: 'open sesame',
      capabilities: {
        backend: 'cpu',
        precision: 'fp32',
        memoryBytes: 2 ** 30,
        layerStepsPerSec: 100,
        name: 'p',
      },
    },
    reconnectForMs: 5_000,
    retryMs: 20,
    ...over,
  }
}

async function session(i: ControlSessionInit, log?: (l: string) => void): Promise<ControlSession> {
  const s = await ControlSession.open(i, { identity: generateIdentity(), ...(log ? { log } : {}) })
  sessions.push(s)
  return s
}

/** The next plan from `url` that holds `peerId`. */
function planFrom(s: ControlSession, url: string, peerId: string): Promise<PlanMessage> {
  return new Promise((resolve) => {
    // The latest plan is handed over inside onPlan, before `off` exists: unsubscribe later.
    let done = false
    const off = s.onPlan((plan, from) => {
      if (done || from !== url || !plan.stages.some((st) => st.peerId === peerId)) return
      done = true
      resolve(plan)
      queueMicrotask(() => off())
    })
  })
}

describe('ControlSession', () => {
  test('joins through the first server that answers', async () => {
    const b = await server('open sesame')
    const s = await session({ ...init([b]), servers: ['http://127.0.0.1:9', b.url] })
    expect(s.serverUrl).toBe(b.url)
    expect(b.meshes.get('m')?.has(s.peerId)).toBe(true)
  })

  test('a dropped peer rejoins through the next server with the same id, and signals flow there', async () => {
    const a = await server('open sesame')
    const b = await server('open sesame')
    const s = await session(init([a, b]))
    const peerId = s.peerId
    await planFrom(s, a.url, peerId)
    const onB = planFrom(s, b.url, peerId)
    await a.close()
    await onB
    expect(s.serverUrl).toBe(b.url)
    expect(s.peerId).toBe(peerId)
    expect(b.meshes.get('m')?.has(peerId)).toBe(true)
    // Another peer of B's mesh signals it: the session's handlers (subscribed once) get it.
    const other = await session(init([b]))
    const got = new Promise<[string, unknown]>((resolve) => s.onSignal((from, data) => resolve([from, data])))
    other.send(peerId, { type: 'probe', n: 1 })
    expect(await got).toEqual([other.peerId, { type: 'probe', n: 1 }])
  })

  test('a server that is down is retried; once every server refuses for good, it gives up and says why', async () => {
    const a = await server('open sesame')
    const b = await server('another token')
    const lines: string[] = []
    const s = await session(init([a, b], { reconnectForMs: 60_000 }), (l) => lines.push(l))
    const port = Number(new URL(a.url).port)
    await a.close()
    // While A is down its round is retried (B's refusal alone is not final). A comes back with
    // another token (say the operator rotated it): now both refuse the token, and waiting ends.
    await server('rotated', port)
    expect(await s.lost).toMatch(/refused: .*token/i)
    expect(lines.some((l) => l.includes(`${b.url} refused this worker`))).toBe(true)
    expect(lines.some((l) => l.includes(`${a.url} refused this worker`))).toBe(true)
  })

  test('nothing answering, it gives up after reconnectForMs', async () => {
    const a = await server('open sesame')
    const s = await session(init([a], { reconnectForMs: 300 }))
    await a.close()
    const why = await s.lost
    expect(why).toMatch(/no server took it back within 300 ms/)
  })

  test('with reconnectForMs 0 the first drop is final', async () => {
    const a = await server('open sesame')
    const b = await server('open sesame')
    const s = await session(init([a, b], { reconnectForMs: 0 }))
    await a.close()
    expect(await s.lost).toMatch(/disconnect|close/)
    expect(b.meshes.get('m')?.has(s.peerId)).toBe(false)
  })

  test('open() with no server, or none reachable, rejects clearly', async () => {
    await expect(
      ControlSession.open({ ...init([]), servers: [] }, { identity: generateIdentity() }),
    ).rejects.toMatchObject({
      code: 'ERR_CONTROL_INPUT',
    })
    await expect(
      ControlSession.open({ ...init([]), servers: ['http://127.0.0.1:9'] }, { identity: generateIdentity() }),
    ).rejects.toMatchObject({ code: 'ERR_NOT_JOINED' })
  })
})
