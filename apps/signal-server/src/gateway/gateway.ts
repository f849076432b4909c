import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { HfTokenizer, type Tokenizer } from '@butterfly/core'
import { useNativeSignatures } from '@butterfly/node-platform'
import type { CompletionBackend } from '../api/completion-backend.js'
import { registerOpenAiRoutes } from '../api/openai-routes.js'
import type { ServerParts } from '../signal-server.js'
import { MeshGateway, type MeshGatewayInit } from './mesh-gateway.js'

export interface GatewayInit extends MeshGatewayInit {
  readonly apiToken?: string | undefined
}

export interface Gateway extends CompletionBackend {
  close(): Promise<void>
}

/**
 * Adds the coordinator to a running server: one MeshGateway per mesh, and the
 * OpenAI-compatible routes in front of them.
 */
export async function attachGateway(
  server: ServerParts,
  init: GatewayInit,
  components: { wrtc: unknown; log?: (line: string) => void },
): Promise<Gateway> {
  useNativeSignatures()
  const gateways = new Map<string, MeshGateway>()
  for (const mesh of server.meshes.list()) {
    const tokenizer = await loadTokenizer(mesh.model.dir)
    gateways.set(
      mesh.name,
      new MeshGateway(init, {
        mesh,
        tokenizer,
        wrtc: components.wrtc,
        metrics: server.metrics,
        ...(components.log ? { log: components.log } : {}),
      }),
    )
  }
  const backend: Gateway = {
    models: () => [...gateways.values()],
    find: (model) => gateways.get(model) ?? [...gateways.values()].find((g) => g.id === model),
    close: async () => {
      await Promise.all([...gateways.values()].map((g) => g.close()))
    },
  }
  const { metrics } = server
  server.app.addHook('onClose', async () => backend.close())
  registerOpenAiRoutes(server.app, {
    backend,
    ...(init.apiToken === undefined ? {} : { apiToken: init.apiToken }),
    observer: {
      onRequest: (route, status, seconds) =>
        metrics.requestDuration.observe({ route, status: String(status) }, seconds),
      onTokens: (mesh, prompt, completion) => {
        metrics.tokens.inc({ mesh, kind: 'prompt' }, prompt)
        metrics.tokens.inc({ mesh, kind: 'completion' }, completion)
      },
      onRejected: (mesh, reason) => metrics.generationsRejected.inc({ mesh, reason }),
    },
  })
  return backend
}

async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'))
  const config = await readFile(join(dir, 'tokenizer_config.json'), 'utf8').then(
    (t) => JSON.parse(t) as unknown,
    () => undefined,
  )
  return HfTokenizer.fromJson(json, config)
}
