import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nodeWrtc, resolveModelDir } from '@butterfly/node-platform'
import { type Coturn, type Proc, start, startCoturn, WORKER_BIN } from '@butterfly/testing/node'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { attachGateway, type Gateway } from '../src/api/attach-gateway.js'
import type { MeshGateway } from '../src/gateway/mesh-gateway.js'
import type { ServerInit, SignalServer } from '../src/http/signal-server.js'
import { startServer } from './helpers.js'
import { meshTokens, readyPlan, referenceTokens } from './mesh-harness.js'

// Real processes: coturn from the distribution, this server minting TURN REST API credentials
// with relay-only ICE, and a `butterfly-worker join` process. Every byte between the worker and
// the gateway's peer goes through coturn, which logs each allocation and the username it admitted.

const SECRET = 'turn-mesh-secret'
const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const TOKENS = 12
let coturn: Coturn
let cache: string
let modelDir: string
const servers: SignalServer[] = []
const procs: Proc[] = []

async function relayServer(turn: ServerInit['turn'], extra: Partial<ServerInit> = {}) {
  let gateway: Gateway | undefined
  const server = await startServer({
    meshes: [{ name: 'default', modelDir }],
    turn,
    iceTransportPolicy: 'relay',
    ...extra,
    extend: async (parts) => {
      gateway = await attachGateway(parts, { planWaitMs: 45_000 }, { wrtc: nodeWrtc() })
    },
  })
  servers.push(server)
  return { server, served: () => gateway?.find('default') as MeshGateway }
}

function worker(server: SignalServer, name: string): Proc {
  const proc = start(
    WORKER_BIN,
    ['join', '--server', server.url, '--device', 'cpu', '--name', name, '--threads', '1'],
    { BUTTERFLY_IDENTITY: join(cache, `${name}.identity.json`), BUTTERFLY_CACHE_DIR: cache },
  )
  procs.push(proc)
  return proc
}

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'bf-turn-mesh-'))
  modelDir = await resolveModelDir('synthetic:tiny', cache)
  coturn = await startCoturn(SECRET)
}, 60_000)

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()))
  await Promise.all(servers.map((s) => s.close()))
  await coturn?.stop()
  await rm(cache, { recursive: true, force: true })
})

describe('relay-only ICE through coturn with minted credentials', () => {
  test('a worker process serves the reference tokens through TURN relays', async () => {
    const { server, served } = await relayServer({ secret: SECRET, urls: [coturn.url], ttlSeconds: 600 })
    const mesh = server.meshes.get('default')
    if (!mesh) throw new Error('no mesh')
    const reference = await referenceTokens(modelDir, PROMPT, TOKENS)
    const before = coturn.allocations()
    const proc = worker(server, 'relayed')
    const [, peerId] = await proc.waitFor(/joined mesh default as (\S+)/, 60_000)
    await readyPlan(mesh, (plan) => plan.stages.length === 1)
    const tokens = await meshTokens(served(), PROMPT, TOKENS).catch((err: Error) => {
      throw new Error(`${err.message}\ncoturn:\n${coturn.output().slice(-4000)}\nworker:\n${proc.output()}`)
    })
    expect(tokens).toEqual(reference)
    // Both ends allocated a relay: the worker under its own minted username, the gateway under its.
    expect(coturn.allocations() - before).toBeGreaterThanOrEqual(2)
    expect(coturn.output()).toMatch(new RegExp(`username=<\\d+:${peerId}>`))
    expect(coturn.output()).toMatch(/username=<\d+:gateway-default>/)
    // Data went through the relays: each side let the other's relayed address in (a permission,
    // or a channel that implies one); coturn may log the second line just after the tokens arrive.
    const permitted = /(?:CREATE_PERMISSION|CHANNEL_BIND) processed, success/
    await coturn.waitFor(new RegExp(`${permitted.source}[\\s\\S]*${permitted.source}`), 10_000)
    expect(coturn.output()).not.toContain(SECRET)
  }, 120_000)

  const refusals: Array<[string, () => Promise<{ server: SignalServer }>]> = [
    [
      "a server whose secret is not coturn's",
      () => relayServer({ secret: 'not-the-coturn-secret', urls: [coturn.url], ttlSeconds: 600 }),
    ],
    [
      'credentials that expired (minted by a clock two days behind)',
      () =>
        relayServer(
          { secret: SECRET, urls: [coturn.url], ttlSeconds: 600 },
          { turnClock: () => Date.now() - 2 * 86_400_000 },
        ),
    ],
  ]
  test.each(refusals)(
    '%s: the worker exits with ERR_TURN_AUTH instead of hanging',
    async (_, make) => {
      const { server } = await make()
      const proc = worker(server, `refused-${servers.length}`)
      const [, peerId] = await proc.waitFor(/joined mesh default as (\S+)/, 60_000)
      expect(await proc.exited).not.toBe(0)
      expect(proc.output()).toMatch(
        /error \[ERR_TURN_AUTH\]: TURN server turn:127\.0\.0\.1:\d+ refused the credentials/,
      )
      expect(proc.output()).not.toMatch(/\n\s+at /)
      // coturn saw this peer's minted username and answered 401 to it.
      expect(coturn.output()).toMatch(
        new RegExp(`user <\\d+:${peerId}>: incoming packet \\w+ processed, error 401`),
      )
      // The refused worker left the mesh: nobody serves it a stage.
      expect(server.meshes.get('default')?.plan.stages ?? []).toEqual([])
    },
    90_000,
  )
})
