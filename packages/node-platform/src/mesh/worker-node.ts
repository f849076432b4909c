import {
  startWorkerNode as startMeshWorker,
  type WorkerNode,
  type WorkerNodeComponents,
  type WorkerNodeInit,
} from '@butterfly/core'
import { loadOrCreateIdentity } from './identity-store.js'
import { useNativeSignatures } from './native-signatures.js'
import { probeTurnServers } from './turn-probe.js'

export type { WorkerNode, WorkerNodeInit } from '@butterfly/core'

/**
 * core's mesh worker with Node's defaults: signatures through node:crypto, TURN credentials
 * probed over UDP under relay-only ICE (probeTurnServers), and the identity
 * kept at $BUTTERFLY_IDENTITY or ~/.config/butterfly/identity.json unless one is given.
 */
export async function startWorkerNode(
  init: WorkerNodeInit,
  components: Omit<WorkerNodeComponents, 'identity'> & {
    readonly identity?: WorkerNodeComponents['identity']
  },
): Promise<WorkerNode> {
  useNativeSignatures()
  const identity = components.identity ?? (await loadOrCreateIdentity())
  return startMeshWorker(init, { checkIce: probeTurnServers, ...components, identity })
}
