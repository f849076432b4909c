import { eosTokenIdsOf, stopTokenIdsOf } from '@butterfly/core'
import { loadTokenizerFiles, useNativeSignatures } from '@butterfly/node-platform'
import type { HealthSource } from '../http/health-routes.js'
import type { ServerParts } from '../http/signal-server.js'
import { MeshGateway, type MeshGatewayInit } from './mesh-gateway.js'
import type { CompletionBackend } from './served-model.js'

/** The coordinator of every mesh: what the API serves from and what /health reads. */
export interface Gateway extends CompletionBackend, HealthSource {
  close(): Promise<void>
}

/**
 * One MeshGateway per mesh of a running server. Hands itself to /health
 * (`server.provideHealth`) and closes with the server; adds no routes (see attachGateway).
 */
export async function createGateway(
  server: ServerParts,
  init: MeshGatewayInit,
  components: { wrtc: unknown; log?: (line: string) => void },
): Promise<Gateway> {
  useNativeSignatures()
  const gateways = new Map<string, MeshGateway>()
  for (const mesh of server.meshes.list()) {
    // The tokenizer, the chat template and the stop ids, from the model directory.
    const { tokenizer, chatTemplate, generationEosIds } = await loadTokenizerFiles(mesh.model.dir)
    const stopTokenIds = stopTokenIdsOf({
      tokenizer,
      configEosIds: eosTokenIdsOf(mesh.config),
      generationEosIds,
      template: chatTemplate,
    })
    gateways.set(
      mesh.name,
      new MeshGateway(init, {
        mesh,
        tokenizer,
        chatTemplate,
        stopTokenIds,
        wrtc: components.wrtc,
        iceFor: server.iceFor,
        metrics: server.metrics,
        ...(components.log ? { log: components.log } : {}),
      }),
    )
  }
  const gateway: Gateway = {
    models: () => [...gateways.values()],
    find: (model) => gateways.get(model) ?? [...gateways.values()].find((g) => g.id === model),
    meshStats: (mesh) => {
      const g = gateways.get(mesh)
      if (g === undefined) return undefined
      return {
        reputation: g.reputation.snapshot(),
        links: g.linkStats(),
        tokensGenerated: g.tokensGenerated,
        verification: g.verificationStats(),
      }
    },
    close: async () => {
      await Promise.all([...gateways.values()].map((g) => g.close()))
    },
  }
  server.provideHealth(gateway)
  server.app.addHook('onClose', async () => gateway.close())
  return gateway
}
