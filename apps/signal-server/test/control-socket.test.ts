import { createHmac } from 'node:crypto'
import {
  ControlClient,
  generateIdentity,
  type JoinAck,
  peerIdFromPublicKey,
  signJoinProof,
  toBase64url,
} from '@butterfly/core'
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest'
import type { SignalServer } from '../src/http/signal-server.js'
import {
  caps,
  closeClients,
  connect,
  disconnected,
  joinPayload,
  joinWorker,
  next,
  nonceOf,
  request,
  startServer,
  tinyModel,
} from './helpers.js'

// Waits are event-driven: a broken server shows up as a fast timeout, not a two-minute one.
vi.setConfig({ testTimeout: 15_000 })

let model: Awaited<ReturnType<typeof tinyModel>>
let server: SignalServer

beforeAll(async () => {
  model = await tinyModel()
  server = await startServer({
    meshes: [
      { name: 'default', modelDir: model.dir },
      { name: 'secret', modelDir: model.dir, meshToken: 's3cret' },
    ],
    iceServers: [{ urls: 'stun:stun.example.org:3478' }],
    heartbeatMs: 1234,
    planOptions: { strategy: 'uniform' },
  })
})
afterEach(() => closeClients(server))
afterAll(async () => {
  await server.close()
  await model.cleanup()
})

type Refusal = { ok: false; error: { name: string; code: string; message: string } }

describe('join', () => {
  test('an open mesh accepts any token and assigns a url-safe id', async () => {
    const socket = await connect(server)
    const identity = generateIdentity()
    const ack = await request<JoinAck>(
      socket,
      'join',
      joinPayload(socket, { mesh: 'default', token: '', capabilities: caps() }, identity),
    )
    expect(ack).toMatchObject({
      ok: true,
      heartbeatMs: 1234,
      iceServers: [{ urls: 'stun:stun.example.org:3478' }],
    })
    if (!ack.ok) throw new Error('unreachable')
    expect(ack.peerId).toMatch(/^[A-Za-z0-9][A-Za-z0-9_-]{8,63}$/)
    expect(ack.peerId).toBe(peerIdFromPublicKey(identity.publicKey))
    expect(server.meshes.get('default')?.has(ack.peerId)).toBe(true)
    expect(Array.from(server.meshes.get('default')?.publicKey(ack.peerId) ?? [])).toEqual(
      Array.from(identity.publicKey),
    )
  })

  test('the right token joins a protected mesh', async () => {
    const w = await joinWorker(server, { mesh: 'secret', token: 's3cret' })
    expect(server.meshes.get('secret')?.has(w.peerId)).toBe(true)
    expect(server.meshes.get('default')?.has(w.peerId)).toBe(false)
  })

  const refusals: Array<[string, { mesh: string; token: string }, string]> = [
    ['no token', { mesh: 'secret', token: '' }, 'ERR_MESH_TOKEN'],
    ['a wrong token', { mesh: 'secret', token: 's3cret!' }, 'ERR_MESH_TOKEN'],
    ['an unknown mesh', { mesh: 'nowhere', token: 's3cret' }, 'ERR_MESH_UNKNOWN'],
  ]
  test.each(refusals)('%s is refused and disconnected', async (_, join, code) => {
    const socket = await connect(server)
    const gone = disconnected(socket)
    const ack = await request<Refusal>(socket, 'join', joinPayload(socket, { ...join, capabilities: caps() }))
    expect(ack.ok).toBe(false)
    expect(ack.error).toMatchObject({ name: 'ControlError', code })
    expect(await gone).toBe('io server disconnect')
    expect(server.meshes.list().map((m) => m.workers().length)).toEqual([0, 0])
  })

  test('joining twice is refused without dropping the first membership', async () => {
    const w = await joinWorker(server)
    const again = await request<Refusal>(
      w.socket,
      'join',
      joinPayload(w.socket, { mesh: 'default', token: '', capabilities: caps() }, w.identity),
    )
    expect(again.error.code).toBe('ERR_CONTROL_INPUT')
    expect(server.meshes.get('default')?.has(w.peerId)).toBe(true)
  })
})

describe('join identity', () => {
  const fields = () => ({ mesh: 'default', token: '', capabilities: caps() })

  test('every connection gets its own hello nonce', async () => {
    const a = await connect(server)
    const b = await connect(server)
    expect(nonceOf(a)).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(nonceOf(a)).not.toBe(nonceOf(b))
  })

  test('a peer keeps its id across reconnects', async () => {
    const identity = generateIdentity()
    const first = await joinWorker(server, { identity })
    const left = disconnected(first.socket)
    await request(first.socket, 'leave')
    first.socket.disconnect()
    await left
    const second = await joinWorker(server, { identity })
    expect(second.peerId).toBe(first.peerId)
    expect(second.peerId).toBe(peerIdFromPublicKey(identity.publicKey))
  })

  test('a second connection with the same key is refused while the first is joined', async () => {
    const identity = generateIdentity()
    const first = await joinWorker(server, { identity })
    const socket = await connect(server)
    const ack = await request<Refusal>(socket, 'join', joinPayload(socket, fields(), identity))
    expect(ack).toMatchObject({ ok: false, error: { name: 'ControlError', code: 'ERR_CONTROL_INPUT' } })
    expect(ack.error.message).toMatch(/identity already connected/)
    expect(
      server.meshes
        .get('default')
        ?.workers()
        .map((w) => w.id),
    ).toEqual([first.peerId])
    expect(first.socket.connected).toBe(true)
  })

  const a = generateIdentity()
  const b = generateIdentity()
  const forgeries: Array<[string, (socket: Awaited<ReturnType<typeof connect>>) => Promise<unknown>]> = [
    [
      'a proof signed by another key (mismatched key)',
      async (socket) =>
        joinPayload(socket, fields(), a, { proof: signJoinProof(b, 'default', nonceOf(socket)) }),
    ],
    [
      'a proof replayed from another connection',
      async (socket) => {
        const other = await connect(server)
        return joinPayload(socket, fields(), a, { proof: signJoinProof(a, 'default', nonceOf(other)) })
      },
    ],
    [
      'a proof for another mesh',
      async (socket) =>
        joinPayload(socket, fields(), a, { proof: signJoinProof(a, 'secret', nonceOf(socket)) }),
    ],
    [
      'a forged (random) proof',
      async (socket) => joinPayload(socket, fields(), a, { proof: toBase64url(new Uint8Array(64).fill(3)) }),
    ],
    [
      'a key that is not a curve point',
      async (socket) =>
        joinPayload(socket, fields(), a, { publicKey: toBase64url(new Uint8Array(32).fill(0xff)) }),
    ],
  ]
  test.each(forgeries)('%s is ERR_JOIN_PROOF and disconnected', async (_, payload) => {
    const socket = await connect(server)
    const gone = disconnected(socket)
    const ack = await request<Refusal>(socket, 'join', await payload(socket))
    expect(ack).toMatchObject({ ok: false, error: { name: 'ControlError', code: 'ERR_JOIN_PROOF' } })
    expect(await gone).toBe('io server disconnect')
    expect(server.meshes.get('default')?.workers()).toEqual([])
  })
})

describe('ControlClient', () => {
  test('joins under the id its key determines; a second client with the same key is refused', async () => {
    const identity = generateIdentity()
    const request = {
      mesh: 'default',
      token: '',
      capabilities: { ...caps(), backend: 'cpu' as const },
      identity,
    }
    const a = await ControlClient.connect({ serverUrl: server.url })
    const b = await ControlClient.connect({ serverUrl: server.url })
    try {
      const ack = await a.join(request)
      expect(ack.peerId).toBe(identity.peerId)
      expect(a.peerId).toBe(identity.peerId)
      const refused = await b.join(request).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(refused).toMatchObject({ name: 'ControlError', code: 'ERR_CONTROL_INPUT' })
      expect((refused as Error).message).toMatch(/identity already connected/)
    } finally {
      await a.leave()
      await b.leave()
    }
  })
})

describe('signals', () => {
  test('are relayed within a mesh with the sender id', async () => {
    const a = await joinWorker(server)
    const b = await joinWorker(server)
    const arrived = next<{ from: string; data: unknown }>(b.socket, 'signal')
    const ack = await request(a.socket, 'signal', { to: b.peerId, data: { type: 'offer', sdp: 'v=0' } })
    expect(ack).toEqual({ ok: true })
    expect(await arrived).toEqual({ from: a.peerId, data: { type: 'offer', sdp: 'v=0' } })
  })

  test('never cross meshes: the sender gets ERR_PEER_UNKNOWN and nothing arrives', async () => {
    const outsider = await joinWorker(server)
    const target = await joinWorker(server, { mesh: 'secret', token: 's3cret' })
    const neighbour = await joinWorker(server, { mesh: 'secret', token: 's3cret' })
    const received: Array<{ from: string }> = []
    target.socket.on('signal', (s: { from: string }) => received.push(s))

    const withAck = await request<Refusal>(outsider.socket, 'signal', { to: target.peerId, data: { x: 1 } })
    expect(withAck.error).toMatchObject({ code: 'ERR_PEER_UNKNOWN' })
    const noAck = next<{ event: string; error: { code: string } }>(outsider.socket, 'error-event')
    outsider.socket.emit('signal', { to: target.peerId, data: { x: 2 } })
    expect(await noAck).toMatchObject({ event: 'signal', error: { code: 'ERR_PEER_UNKNOWN' } })

    // The server writes to the target's one connection in order: had anything been relayed,
    // it would arrive before this marker.
    const marker = next(target.socket, 'signal')
    await request(neighbour.socket, 'signal', { to: target.peerId, data: { marker: true } })
    await marker
    expect(received).toEqual([{ from: neighbour.peerId, data: { marker: true } }])
  })

  test('to a peer that left is ERR_PEER_UNKNOWN', async () => {
    const a = await joinWorker(server)
    const b = await joinWorker(server)
    const left = next<{ peerId: string }>(a.socket, 'peer-left', (e) => e.peerId === b.peerId)
    await request(b.socket, 'leave')
    expect(await left).toEqual({ peerId: b.peerId })
    const ack = await request<Refusal>(a.socket, 'signal', { to: b.peerId, data: {} })
    expect(ack.error.code).toBe('ERR_PEER_UNKNOWN')
  })
})

describe('before join', () => {
  const events: Array<[string, unknown]> = [
    ['heartbeat', {}],
    ['signal', { to: 'someone', data: {} }],
    ['stage-ready', { planVersion: 1 }],
    ['leave', {}],
  ]
  test.each(events)('%s is ERR_NOT_JOINED', async (event, payload) => {
    const socket = await connect(server)
    const ack = await request<Refusal>(socket, event, payload)
    expect(ack).toMatchObject({ ok: false, error: { name: 'ControlError', code: 'ERR_NOT_JOINED' } })
    expect(socket.connected).toBe(true)
  })

  test('without an ack the refusal comes as an error-event', async () => {
    const socket = await connect(server)
    const refused = next<{ event: string; error: { code: string } }>(socket, 'error-event')
    socket.emit('heartbeat')
    expect(await refused).toMatchObject({ event: 'heartbeat', error: { code: 'ERR_NOT_JOINED' } })
  })
})

describe('malformed events', () => {
  const CURRENT_PLAN = Symbol('the plan the peer last received')
  const huge = { to: 'pabc', data: { sdp: 'x'.repeat(70 * 1024) } }
  // Identity fields are well formed; the proof is not checked because parsing fails first.
  const identity = generateIdentity()
  const join = (over: Record<string, unknown>, capsOver: Record<string, unknown> = {}) => ({
    mesh: 'default',
    token: '',
    capabilities: { ...caps(), ...capsOver },
    publicKey: toBase64url(identity.publicKey),
    proof: toBase64url(new Uint8Array(64)),
    ...over,
  })
  const beforeJoin: Array<[string, string, unknown[]]> = [
    ['join with no payload', 'join', []],
    ['join that is a string', 'join', ['hello']],
    ['join that is an array', 'join', [[1, 2]]],
    ['join that is null', 'join', [null]],
    ['join with a bad mesh name', 'join', [join({ mesh: '../etc' })]],
    ['join with an empty mesh name', 'join', [join({ mesh: '' })]],
    ['join with a numeric token', 'join', [join({ token: 42 })]],
    ['join with an overlong token', 'join', [join({ token: 't'.repeat(300) })]],
    ['join without capabilities', 'join', [{ mesh: 'default', token: '' }]],
    ['join with an unknown backend', 'join', [join({}, { backend: 'tpu' })]],
    ['join with NaN memory', 'join', [join({}, { memoryBytes: Number.NaN })]],
    ['join with negative memory', 'join', [join({}, { memoryBytes: -1 })]],
    ['join with absurd memory', 'join', [join({}, { memoryBytes: 2 ** 60 })]],
    ['join with string memory', 'join', [join({}, { memoryBytes: '1GB' })]],
    ['join with infinite speed', 'join', [join({}, { layerStepsPerSec: Number.POSITIVE_INFINITY })]],
    ['join with a bad peer name', 'join', [join({}, { name: 'white space' })]],
    ['join with two arguments', 'join', [join({}), 'extra']],
    ['join without a public key', 'join', [join({ publicKey: undefined })]],
    ['join with a 16-byte public key', 'join', [join({ publicKey: toBase64url(new Uint8Array(16)) })]],
    ['join with a hex public key', 'join', [join({ publicKey: 'ab'.repeat(32) })]],
    ['join without a proof', 'join', [join({ proof: undefined })]],
    ['join with a 65-byte proof', 'join', [join({ proof: toBase64url(new Uint8Array(65)) })]],
    ['join with a numeric proof', 'join', [join({ proof: 7 })]],
    ['an unknown event', 'frobnicate', [{}]],
  ]
  const afterJoin: Array<[string, string, unknown[]]> = [
    ['signal that is a number', 'signal', [7]],
    ['signal without data', 'signal', [{ to: 'pabc' }]],
    ['signal with array data', 'signal', [{ to: 'pabc', data: [1] }]],
    ['signal to a bad peer id', 'signal', [{ to: '-bad/id', data: {} }]],
    ['signal to an overlong id', 'signal', [{ to: 'p'.repeat(65), data: {} }]],
    ['a huge signal', 'signal', [huge]],
    ['stage-ready without a version', 'stage-ready', [{}]],
    ['stage-ready with NaN', 'stage-ready', [{ planVersion: Number.NaN }]],
    ['stage-ready with a negative version', 'stage-ready', [{ planVersion: -1 }]],
    ['stage-ready for a future plan', 'stage-ready', [{ planVersion: 1e9 }]],
    ['stage-ready from a peer with no stage', 'stage-ready', [CURRENT_PLAN]],
  ]

  test.each(beforeJoin)('%s is ERR_CONTROL_INPUT', async (_, event, args) => {
    const socket = await connect(server)
    const ack = await request<Refusal>(socket, event, ...args)
    expect(ack).toMatchObject({ ok: false, error: { code: 'ERR_CONTROL_INPUT' } })
    expect(socket.connected).toBe(true)
    await expectStillServing()
  })

  test.each(afterJoin)('%s is ERR_CONTROL_INPUT', async (_, event, args) => {
    const w = await joinWorker(server, { name: 'bystander' })
    // No throughput: placement never gives it a stage.
    const bad = await joinWorker(server, { layerStepsPerSec: 0 })
    const payload = args[0] === CURRENT_PLAN ? [{ planVersion: bad.plans.at(-1)?.version }] : args
    const ack = await request<Refusal>(bad.socket, event, ...payload)
    expect(ack).toMatchObject({ ok: false, error: { code: 'ERR_CONTROL_INPUT' } })
    expect(bad.socket.connected).toBe(true)
    expect(w.socket.connected).toBe(true)
    await expectStillServing()
  })

  test('non-JSON payloads over the wire do not crash the server', async () => {
    const socket = await connect(server)
    const gone = disconnected(socket)
    // A raw engine.io message that is not a valid socket.io packet: the parser rejects it.
    ;(socket.io.engine as unknown as { send(s: string): void }).send('2["join",{"mesh":')
    await gone
    await expectStillServing()
  })
})

/** Two fresh peers can still join and signal each other. */
async function expectStillServing(): Promise<void> {
  const a = await joinWorker(server)
  const b = await joinWorker(server)
  const got = next(b.socket, 'signal')
  await request(a.socket, 'signal', { to: b.peerId, data: { ping: 1 } })
  expect(await got).toEqual({ from: a.peerId, data: { ping: 1 } })
  a.socket.disconnect()
  b.socket.disconnect()
}

describe('TURN credentials in the join ack', () => {
  test('each join gets the static servers plus a TURN server minted for its peer id, and the policy', async () => {
    let nowMs = 1_800_000_000_000
    const turnServer = await startServer({
      meshes: [{ name: 'default', modelDir: model.dir }],
      iceServers: [{ urls: 'stun:127.0.0.1:3478' }],
      turn: { secret: 'ack-secret', urls: ['turn:127.0.0.1:3478'], ttlSeconds: 120 },
      iceTransportPolicy: 'relay',
      turnClock: () => nowMs,
    })
    try {
      const identity = generateIdentity()
      const joinOnce = async () => {
        const socket = await connect(turnServer)
        const ack = await request<JoinAck>(
          socket,
          'join',
          joinPayload(socket, { mesh: 'default', token: '', capabilities: caps() }, identity),
        )
        if (!ack.ok) throw new Error(`refused: ${JSON.stringify(ack)}`)
        // Leaving (acknowledged) frees the identity for the rejoin.
        expect(await request(socket, 'leave', {})).toMatchObject({ ok: true })
        socket.disconnect()
        return ack
      }
      const first = await joinOnce()
      const expiry = 1_800_000_000 + 120
      const username = `${expiry}:${first.peerId}`
      expect(first.iceTransportPolicy).toBe('relay')
      expect(first.iceServers).toEqual([
        { urls: 'stun:127.0.0.1:3478' },
        {
          urls: ['turn:127.0.0.1:3478'],
          username,
          credential: createHmac('sha1', 'ack-secret').update(username).digest('base64'),
        },
      ])
      expect(JSON.stringify(first)).not.toContain('ack-secret')
      // The peer leaves and rejoins later: a fresh credential, not the first one.
      expect(turnServer.meshes.get('default')?.has(first.peerId)).toBe(false)
      nowMs += 30_000
      const second = await joinOnce()
      expect(second.iceServers[1]?.username).toBe(`${expiry + 30}:${first.peerId}`)
    } finally {
      await turnServer.close()
    }
  })

  test('without TURN flags the ack says all', async () => {
    const socket = await connect(server)
    const ack = await request<JoinAck>(
      socket,
      'join',
      joinPayload(socket, { mesh: 'default', token: '', capabilities: caps() }, generateIdentity()),
    )
    expect(ack).toMatchObject({
      ok: true,
      iceTransportPolicy: 'all',
      iceServers: [{ urls: 'stun:stun.example.org:3478' }],
    })
  })
})
