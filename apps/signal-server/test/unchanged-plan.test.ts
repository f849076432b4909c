import type { PlanStage } from '@butterfly/core'
import { afterAll, beforeAll, expect, test, vi } from 'vitest'
import type { Mesh, Planner } from '../src/control/mesh.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { closeClients, joinWorker, next, request, startServer, tinyModel } from './helpers.js'

vi.setConfig({ testTimeout: 15_000 })

// A planner that puts every layer on the first worker: joins and leaves of the others change
// nothing, as most churn among a thousand peers changes nothing.
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
