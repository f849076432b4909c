import type { PlanStage } from '@butterfly/core'
import { afterAll, beforeAll, expect, test, vi } from 'vitest'
import type { Mesh, Planner } from '../src/control/mesh.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { closeClients, joinWorker, next, request, startServer, tinyModel } from './helpers.js'

vi.setConfig({ testTimeout: 15_000 })

// Every layer on the first worker: the others hold no stage.
const firstTakesAll: Planner = (config, workers): PlanStage[] => {
  const first = workers[0]
  return first === undefined ? [] : [{ start: 0, end: config.numLayers, peerId: first.id }]
}

let model: Awaited<ReturnType<typeof tinyModel>>
let server: SignalServer
let mesh: Mesh
beforeAll(async () => {
  model = await tinyModel()
  server = await startServer({ meshes: [{ name: 'default', modelDir: model.dir }], planner: firstTakesAll })
  mesh = server.meshes.get('default') as Mesh
})
afterAll(async () => {
  await closeClients(server)
  await server.close()
  await model.cleanup()
})

test('a departure is told to its signal contacts, stage holders and the gateway, not to every member', async () => {
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
})
