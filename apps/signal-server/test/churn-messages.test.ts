import { afterAll, beforeAll, expect, test, vi } from 'vitest'
import type { Mesh } from '../src/control/mesh.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { firstTakesAllServer, joinWorker, next, request } from './helpers.js'

vi.setConfig({ testTimeout: 15_000 })

// What churn sends, on meshes whose every layer is on the first worker: the others hold no stage,
// so their joins and leaves change no plan.
let setup: Awaited<ReturnType<typeof firstTakesAllServer>>
let server: SignalServer
let mesh: Mesh
beforeAll(async () => {
  setup = await firstTakesAllServer()
  ;({ server, mesh } = setup)
})
afterAll(async () => setup?.close())

test('a plan that churn did not change goes only to the peer joining, and keeps its version', async () => {
  const a = await joinWorker(server)
  expect(a.plans.map((p) => p.version)).toEqual([1])
  const b = await joinWorker(server)
  // The newcomer still gets the plan, after its ack, as every joining peer relies on.
  expect(b.plans.map((p) => p.version)).toEqual([1])
  expect(b.plans[0]?.stages).toEqual([{ start: 0, end: 4, peerId: a.peerId }])
  // The server writes to a's one connection in order: a plan sent to it would arrive before
  // this heartbeat's answer.
  await request(a.socket, 'heartbeat', {})
  expect(a.plans.map((p) => p.version)).toEqual([1])

  const left = next<{ peerId: string }>(a.socket, 'peer-left', (e) => e.peerId === b.peerId)
  await request(b.socket, 'leave', {})
  await left
  await request(a.socket, 'heartbeat', {})
  expect(a.plans.map((p) => p.version)).toEqual([1])
  expect(mesh.plan.version).toBe(1)
})

test('a plan that did change still goes to every member with the next version', async () => {
  const c = await joinWorker(server)
  const d = await joinWorker(server)
  const holder = mesh.plan.stages[0]?.peerId
  expect(holder).not.toBe(c.peerId)
  const moved = next(c.socket, 'plan')
  const movedD = next(d.socket, 'plan')
  // The first worker leaves: its layers move to c, the next one in join order.
  const first = mesh.workers()[0]?.id
  expect(first).toBe(holder)
  mesh.remove([first as string], 'leave')
  expect(await moved).toMatchObject({ version: 2, stages: [{ start: 0, end: 4, peerId: c.peerId }] })
  expect(await movedD).toMatchObject({ version: 2 })
})

test('a departure is told to its signal contacts, stage holders and the gateway, not to every member', async () => {
  // A mesh of its own: the tests above leave members behind.
  const own = await firstTakesAllServer()
  const { server, mesh } = own
  const holder = await joinWorker(server)
  const leaver = await joinWorker(server)
  const contact = await joinWorker(server)
  const bystander = await joinWorker(server)
  expect(mesh.plan.stages.map((s) => s.peerId)).toEqual([holder.peerId])
  const gatewayHeard: string[] = []
  const gw = mesh.addLocalPeer('gateway', {
    onSignal() {},
    onPlan() {},
    onPeerLeft: (id) => gatewayHeard.push(id),
  })
  const bystanderHeard: string[] = []
  bystander.socket.on('peer-left', (e: { peerId: string }) => bystanderHeard.push(e.peerId))

  const signalled = next(contact.socket, 'signal')
  await request(leaver.socket, 'signal', { to: contact.peerId, data: { type: 'offer' } })
  await signalled

  const toContact = next<{ peerId: string }>(contact.socket, 'peer-left')
  const toHolder = next<{ peerId: string }>(holder.socket, 'peer-left')
  await request(leaver.socket, 'leave', {})
  expect(await toContact).toEqual({ peerId: leaver.peerId })
  expect(await toHolder).toEqual({ peerId: leaver.peerId })
  expect(gatewayHeard).toEqual([leaver.peerId])
  // The server writes to the bystander's one connection in order: a peer-left sent to it
  // would arrive before this heartbeat's answer.
  await request(bystander.socket, 'heartbeat', {})
  expect(bystanderHeard).toEqual([])

  // Contacts are forgotten with the departure: a later peer with no signals hears of nobody.
  const left = next<{ peerId: string }>(holder.socket, 'peer-left')
  await request(contact.socket, 'leave', {})
  expect(await left).toEqual({ peerId: contact.peerId })
  await request(bystander.socket, 'heartbeat', {})
  expect(bystanderHeard).toEqual([])
  gw.leave()
  await own.close()
})
