import { generateIdentity, peerIdFromPublicKey, toBase64url } from '@butterfly/core'
import { describe, expect, test } from 'vitest'
import {
  parseBeat,
  parseClusterSignal,
  parseExclusionReason,
  parseHint,
  parseMemberRecord,
  parsePeerEvidence,
  parseServerId,
  parseStoredPlan,
  peerEvidenceJson,
  storedPlanJson,
} from '../src/control/cluster-records.js'
import { caps } from './helpers.js'

// Everything another server wrote to Redis or sent through it, fed as tables of malformed input:
// each is refused with a ClusterError under a stable code, never a TypeError or a crash, and a
// valid record parses to exactly what was written.

function refusedWith(code: string, fn: () => unknown): void {
  let thrown: unknown
  try {
    fn()
  } catch (err) {
    thrown = err
  }
  expect(thrown).toMatchObject({ name: 'ClusterError', code })
}

const identity = generateIdentity()
const peer = peerIdFromPublicKey(identity.publicKey)
const key = toBase64url(identity.publicKey)
const other = peerIdFromPublicKey(generateIdentity().publicKey)
const mesh = { name: 'default', modelId: 'synthetic:tiny', modelPath: '/models/default' }
const plan = {
  version: 3,
  mesh: 'default',
  modelPath: '/models/default',
  modelId: 'synthetic:tiny',
  stages: [{ start: 0, end: 2, peerId: peer }],
}

describe('parseServerId and parseBeat', () => {
  test.each([[undefined], [''], ['x'.repeat(33)], ['bad id!'], ['a/b'], [7], [{}]])(
    'server id %j is refused',
    (v) => refusedWith('ERR_CLUSTER_PAYLOAD', () => parseServerId(v)),
  )

  test('a server id of 1-32 url-safe characters parses', () => {
    expect(parseServerId('a1b2-C_3')).toBe('a1b2-C_3')
  })

  test.each([
    ['not json'],
    ['{'],
    ['[]'],
    ['null'],
    ['{}'],
    ['{"gen":-1}'],
    ['{"gen":1.5}'],
    ['{"gen":"2"}'],
  ])('liveness %s is refused', (raw) => refusedWith('ERR_CLUSTER_PAYLOAD', () => parseBeat(raw)))

  test('a liveness value gives its generation', () => {
    expect(parseBeat('{"gen":12}')).toEqual({ gen: 12 })
  })
})

describe('parseMemberRecord', () => {
  const good = { id: peer, joinedAt: 5, capabilities: caps('w'), publicKey: key }

  test.each([
    ['not JSON', peer, '{'],
    ['an array', peer, '[]'],
    ['a bad id key', 'not a peer id!', JSON.stringify(good)],
    ['another id inside', peer, JSON.stringify({ ...good, id: other })],
    ['no joinedAt', peer, JSON.stringify({ ...good, joinedAt: undefined })],
    ['a negative joinedAt', peer, JSON.stringify({ ...good, joinedAt: -1 })],
    ['a string joinedAt', peer, JSON.stringify({ ...good, joinedAt: '5' })],
    ['bad capabilities', peer, JSON.stringify({ ...good, capabilities: { backend: 'abacus' } })],
    ['no key', peer, JSON.stringify({ ...good, publicKey: undefined })],
    ['a short key', peer, JSON.stringify({ ...good, publicKey: 'AAAA' })],
    ['an oversized key', peer, JSON.stringify({ ...good, publicKey: 'A'.repeat(65) })],
    ['a key without capabilities', peer, JSON.stringify({ id: peer, joinedAt: 1, publicKey: key })],
  ])('%s is ERR_CLUSTER_PAYLOAD', (_, id, raw) =>
    refusedWith('ERR_CLUSTER_PAYLOAD', () => parseMemberRecord(id, raw)),
  )

  test("a record under another peer's key is ERR_CLUSTER_SESSION", () => {
    const stolen = { ...good, id: other }
    refusedWith('ERR_CLUSTER_SESSION', () => parseMemberRecord(other, JSON.stringify(stolen)))
  })

  test("a worker's record gives its key; a gateway's has none", () => {
    const worker = parseMemberRecord(peer, JSON.stringify(good))
    expect(worker.record).toEqual({ ...good, capabilities: { ...good.capabilities, precision: 'fp32' } })
    expect(worker.publicKey).toEqual(identity.publicKey)
    const gateway = parseMemberRecord(
      'gateway-default',
      JSON.stringify({ id: 'gateway-default', joinedAt: 9 }),
    )
    expect(gateway).toEqual({ record: { id: 'gateway-default', joinedAt: 9 }, publicKey: undefined })
  })
})

describe('parseStoredPlan', () => {
  const stored = { planner: 'srv1', plan }

  test.each([
    ['not JSON', 'nope'],
    ['an array', '[]'],
    ['no planner', JSON.stringify({ plan })],
    ['a bad planner', JSON.stringify({ ...stored, planner: 'bad id!' })],
    ['no plan', JSON.stringify({ planner: 'srv1' })],
    ['a plan for another mesh', JSON.stringify({ ...stored, plan: { ...plan, mesh: 'other' } })],
    ['a plan for another model', JSON.stringify({ ...stored, plan: { ...plan, modelId: 'x' } })],
    ['a plan for another path', JSON.stringify({ ...stored, plan: { ...plan, modelPath: '/elsewhere' } })],
    ['a negative version', JSON.stringify({ ...stored, plan: { ...plan, version: -1 } })],
    [
      'a stage that ends before it starts',
      JSON.stringify({ ...stored, plan: { ...plan, stages: [{ start: 2, end: 1, peerId: peer }] } }),
    ],
    ['an error without a code', JSON.stringify({ ...stored, error: { name: 'E', message: 'm' } })],
    [
      'an error with a bad code',
      JSON.stringify({ ...stored, error: { name: 'E', code: 'lower', message: 'm' } }),
    ],
    [
      'an oversized error message',
      JSON.stringify({ ...stored, error: { name: 'E', code: 'ERR_X', message: 'm'.repeat(2049) } }),
    ],
  ])('%s is refused', (_, raw) => refusedWith('ERR_CLUSTER_PAYLOAD', () => parseStoredPlan(raw, mesh)))

  test('storedPlanJson round-trips, with and without its error', () => {
    expect(parseStoredPlan(storedPlanJson('srv1', plan, undefined), mesh)).toEqual({
      planner: 'srv1',
      plan,
      error: undefined,
    })
    const error = { name: 'PlanError', code: 'ERR_NO_CAPACITY', message: 'too few peers' }
    expect(parseStoredPlan(storedPlanJson('srv1', plan, error), mesh).error).toEqual(error)
  })
})

describe('exclusion reasons, hints and cross-server signals', () => {
  test.each([[''], ['Outvoted'], ['out voted'], ['x'.repeat(33)], [3], [null]])('reason %j is refused', (v) =>
    refusedWith('ERR_CLUSTER_PAYLOAD', () => parseExclusionReason(v)),
  )

  test('a reason of lower-case words parses', () => {
    expect(parseExclusionReason('slow-claim')).toBe('slow-claim')
  })

  test.each([
    [null],
    ['hint'],
    [{ mesh: 'default' }],
    [{ mesh: 'default', from: 'bad id!' }],
    [{ mesh: 7, from: 'srv1' }],
  ])('hint %j is refused', (v) => refusedWith('ERR_CLUSTER_PAYLOAD', () => parseHint(v)))

  const signal = { mesh: 'default', sender: 'srv1', owner: 'srv2', from: peer, to: other, data: { sdp: 'x' } }
  test.each([
    ['not an object', 'signal'],
    ['no sender', { ...signal, sender: undefined }],
    ['a bad owner', { ...signal, owner: 'a b' }],
    ['a bad from', { ...signal, from: '' }],
    ['a bad to', { ...signal, to: 42 }],
    ['data that is not an object', { ...signal, data: 'sdp' }],
    ['oversized data', { ...signal, data: { sdp: 'x'.repeat(1 << 20) } }],
    ['no mesh', { ...signal, mesh: undefined }],
  ])('a signal with %s is refused', (_, v) => refusedWith('ERR_CLUSTER_PAYLOAD', () => parseClusterSignal(v)))

  test('a valid signal parses to its fields', () => {
    expect(parseClusterSignal(signal)).toEqual(signal)
    expect(parseHint({ mesh: 'default', from: 'srv1' })).toEqual({ mesh: 'default', from: 'srv1' })
  })
})

describe('parsePeerEvidence', () => {
  test.each([
    ['a bad peer id', 'bad id!', '{"a":1,"d":0}'],
    ['not JSON', peer, '{a:1}'],
    ['an array', peer, '[1,0]'],
    ['a negative count', peer, '{"a":-1,"d":0}'],
    ['a fraction', peer, '{"a":1.5,"d":0}'],
    ['a string count', peer, '{"a":"1","d":0}'],
    ['a missing count', peer, '{"a":1}'],
    ['a count past 2^40', peer, `{"a":${2 ** 40 + 1},"d":0}`],
  ])('%s is refused', (_, id, raw) => refusedWith('ERR_CLUSTER_PAYLOAD', () => parsePeerEvidence(id, raw)))

  test('counts round-trip', () => {
    const e = { agreements: 120, disagreements: 3 }
    expect(parsePeerEvidence(peer, peerEvidenceJson(e))).toEqual(e)
  })
})
