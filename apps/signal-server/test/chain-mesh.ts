import type { InferenceBackend } from '@butterfly/core'
import { nodeWrtc, type WorkerNode } from '@butterfly/node-platform'
import { attachGateway, type GatewayInit } from '../src/api/attach-gateway.js'
import type { MeshGateway } from '../src/gateway/mesh-gateway.js'
import type { SignalServer } from '../src/http/signal-server.js'
import { startServer, tinyModel } from './helpers.js'
import { readyPlan, startLocalWorker } from './mesh-harness.js'

// The chain suites' mesh: synthetic:tiny served by a server with its gateway (its log kept), two
// workers in this process over real WebRTC, and a ready plan of two stages (r=1: chained).

export interface ChainMesh {
  readonly modelDir: string
  readonly server: SignalServer
  readonly gateway: MeshGateway
  readonly workers: readonly WorkerNode[]
  /** The gateway's log lines so far. */
  readonly logs: readonly string[]
  close(): Promise<void>
}

export interface ChainWorker {
  readonly name: string
  readonly backend?: InferenceBackend
  /** An RTCPeerConnection implementation other than node-datachannel's (fault injection). */
  readonly wrtc?: unknown
}

export async function startChainMesh(
  init: Omit<GatewayInit, 'apiToken'>,
  specs: readonly [ChainWorker, ChainWorker],
): Promise<ChainMesh> {
  const { dir: modelDir, cleanup } = await tinyModel()
  const logs: string[] = []
  let gateway: MeshGateway | undefined
  const server = await startServer({
    meshes: [{ name: 'default', modelDir }],
    planOptions: { strategy: 'uniform' },
    extend: async (parts) => {
      const g = await attachGateway(
        parts,
        { relay: 'chain', ...init },
        { wrtc: nodeWrtc(), log: (line) => logs.push(line) },
      )
      gateway = g.find('default') as MeshGateway
    },
  })
  const workers: WorkerNode[] = []
  const close = async () => {
    await Promise.all(workers.map((w) => w.stop()))
    await server.close()
    await cleanup()
  }
  try {
    for (const w of specs) {
      workers.push(
        await startLocalWorker(server, w.name, w.backend, w.wrtc === undefined ? {} : { wrtc: w.wrtc }),
      )
    }
    const mesh = server.meshes.get('default')
    if (mesh === undefined || gateway === undefined) throw new Error('no mesh')
    await readyPlan(mesh, (plan) => plan.stages.length === 2)
    return { modelDir, server, gateway, workers, logs, close }
  } catch (err) {
    await close()
    throw err
  }
}
